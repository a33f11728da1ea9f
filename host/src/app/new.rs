//! `switchboard new NAME --lang rust`: writes a plugin project in `./NAME` that builds
//! outside this repository, with the contract WIT and the Rust SDK vendored into it.
//!
//! Everything it writes is embedded in the binary (the repository's `wit/*.wit` and
//! `plugins/sdk`), so the project builds against exactly the contract this host checks.

use std::fmt;
use std::path::{Path, PathBuf};

/// The language of a new plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// A Cargo project built for wasm32-wasip2 with the vendored Rust SDK.
    Rust,
}

/// The world a new plugin exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `stream-plugin`: one TCP (or serial) connection per instance.
    Stream,
    /// `datagram-plugin`: one UDP datagram in, replies out.
    Datagram,
    /// `full-plugin`: both handlers (and the hub).
    Full,
}

/// Why `new` wrote nothing (or stopped part way).
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// NAME is not usable as a directory, crate and file stem.
    #[error(
        "invalid plugin name {0:?}: use 1-64 ASCII letters, digits, '-' or '_', starting with a letter (it becomes the directory, the crate and NAME.wasm)"
    )]
    InvalidName(String),
    /// `./NAME` exists and is not an empty directory.
    #[error("{0} already exists and is not an empty directory: pick another NAME or remove it")]
    Exists(PathBuf),
    /// Writing a file failed.
    #[error("writing {path}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What `new` wrote: the project directory and the command that builds `NAME.wasm` in it.
#[derive(Debug)]
pub struct Created {
    /// The project directory.
    pub dir: PathBuf,
    /// The shell command, run inside `dir`, that produces `NAME.wasm`.
    pub build: String,
    /// The plugin file the build produces (relative to `dir`).
    pub wasm: String,
}

impl fmt::Display for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "created {}", self.dir.display())?;
        writeln!(f, "build: cd {} && {}", self.dir.display(), self.build)?;
        writeln!(f, "check: switchboard check {}", self.wasm)
    }
}

/// The embedded files of the contract and the Rust SDK, by their path in the new project.
const VENDORED: &[(&str, &str)] = &[
    ("wit/switchboard.wit", include_str!("../../../wit/switchboard.wit")),
    ("wit/deps/io/io.wit", include_str!("../../../wit/deps/io/io.wit")),
    ("vendor/sdk/Cargo.toml", include_str!("../../../plugins/sdk/Cargo.toml")),
    ("vendor/sdk/src/lib.rs", include_str!("../../../plugins/sdk/src/lib.rs")),
    ("vendor/sdk/src/conn.rs", include_str!("../../../plugins/sdk/src/conn.rs")),
    ("vendor/sdk/src/error.rs", include_str!("../../../plugins/sdk/src/error.rs")),
    ("vendor/sdk/src/framing.rs", include_str!("../../../plugins/sdk/src/framing.rs")),
    ("vendor/sdk/src/room.rs", include_str!("../../../plugins/sdk/src/room.rs")),
    ("vendor/sdk/worlds/full/Cargo.toml", include_str!("../../../plugins/sdk/worlds/full/Cargo.toml")),
    ("vendor/sdk/worlds/full/src/lib.rs", include_str!("../../../plugins/sdk/worlds/full/src/lib.rs")),
    ("vendor/sdk/worlds/stream/Cargo.toml", include_str!("../../../plugins/sdk/worlds/stream/Cargo.toml")),
    ("vendor/sdk/worlds/stream/src/lib.rs", include_str!("../../../plugins/sdk/worlds/stream/src/lib.rs")),
    ("vendor/sdk/worlds/datagram/Cargo.toml", include_str!("../../../plugins/sdk/worlds/datagram/Cargo.toml")),
    ("vendor/sdk/worlds/datagram/src/lib.rs", include_str!("../../../plugins/sdk/worlds/datagram/src/lib.rs")),
    // The host's lock file pins the SDK's dependencies to the versions this host was built
    // and tested with; cargo drops the entries the plugin does not use.
    ("Cargo.lock", include_str!("../../../Cargo.lock")),
];

/// Is `name` usable as a directory, a crate name and a file stem?
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with("switchboard")
}

/// The root manifest: its own `[workspace]` (so a parent workspace does not swallow it),
/// the workspace keys the vendored SDK manifests inherit, and the plugin crate.
fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
switchboard-sdk = {{ path = "vendor/sdk" }}

# Its own workspace: the project builds on its own even inside another Cargo workspace.
[workspace]
members = ["vendor/sdk", "vendor/sdk/worlds/full", "vendor/sdk/worlds/stream", "vendor/sdk/worlds/datagram"]

# Inherited by the vendored SDK's manifests.
[workspace.package]
edition = "2024"
rust-version = "1.95"
license = "MIT OR Apache-2.0"

[workspace.dependencies]
wit-bindgen = {{ version = "0.61.1", default-features = false, features = ["macros", "realloc"] }}

[profile.release]
opt-level = "s"
lto = true
strip = true
"#
    )
}

/// The echo-shaped handler for `world`.
fn lib_rs(name: &str, world: World) -> String {
    let (imports, export) = match world {
        World::Stream => ("Connection, Plugin, PluginInfo, Result, StreamHandler", "export_stream_plugin"),
        World::Datagram => ("DatagramHandler, Plugin, PluginInfo", "export_datagram_plugin"),
        World::Full => ("Connection, DatagramHandler, Plugin, PluginInfo, Result, StreamHandler", "export_full_plugin"),
    };
    let listen = if world == World::Datagram { "udp:50007" } else { "tcp:50007" };
    let mut out = format!(
        r#"//! {name}: every chunk read comes back as `Echo=>` + chunk (setting `PREFIX` replaces `Echo=>`).
//!
//! Rules of a plugin: no sockets of its own (the host owns the network), settings arrive
//! as environment variables (`switchboard serve --set KEY=VALUE`), files only under the
//! folders the host grants.

use std::io::BufRead;

use switchboard_sdk::{{{imports}, plugin_info, setting}};

struct Plugin_;

fn prefix() -> Vec<u8> {{
    setting("PREFIX", "Echo=>").into_bytes()
}}

impl Plugin for Plugin_ {{
    fn describe() -> PluginInfo {{
        plugin_info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"), "replies Echo=> + each chunk read (PREFIX)", &["{listen}"])
    }}
}}
"#
    );
    if world != World::Datagram {
        out.push_str(
            r#"
impl StreamHandler for Plugin_ {
    fn handle(conn: &mut Connection) -> Result {
        let mut reply = prefix();
        let prefix_len = reply.len();
        loop {
            let chunk = conn.fill_buf()?;
            if chunk.is_empty() {
                return Ok(()); // the client closed its side
            }
            reply.truncate(prefix_len);
            reply.extend_from_slice(chunk);
            let n = chunk.len();
            conn.consume(n);
            conn.send(&reply)?;
        }
    }
}
"#,
        );
    } else {
        out = out.replace("use std::io::BufRead;\n\n", "");
    }
    if world != World::Stream {
        out.push_str(
            r#"
impl DatagramHandler for Plugin_ {
    fn handle_datagram(_peer: &str, payload: Vec<u8>) -> Vec<Vec<u8>> {
        let mut reply = prefix();
        reply.extend_from_slice(&payload);
        vec![reply]
    }
}
"#,
        );
    }
    out.push_str(&format!("\nswitchboard_sdk::{export}!(Plugin_);\n"));
    out
}

fn write(dir: &Path, rel: &str, contents: &str) -> Result<(), NewError> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| NewError::Write { path: parent.to_path_buf(), source })?;
    }
    std::fs::write(&path, contents).map_err(|source| NewError::Write { path, source })
}

/// Write a new plugin project named `name` under `parent` (the current directory for the CLI).
pub fn new_project(parent: &Path, name: &str, lang: Lang, world: World) -> Result<Created, NewError> {
    if !valid_name(name) {
        return Err(NewError::InvalidName(name.to_owned()));
    }
    let dir = parent.join(name);
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(NewError::Exists(dir));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return Err(NewError::Exists(dir)),
    }
    match lang {
        Lang::Rust => {
            for (rel, contents) in VENDORED {
                write(&dir, rel, contents)?;
            }
            write(&dir, "Cargo.toml", &cargo_toml(name))?;
            write(&dir, "src/lib.rs", &lib_rs(name, world))?;
            write(&dir, ".gitignore", "/target\n*.wasm\n")?;
            let stem = name.replace('-', "_");
            let build = format!(
                "cargo build --release --target wasm32-wasip2 && cp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{stem}.wasm\" {name}.wasm"
            );
            write(&dir, "README.md", &format!("# {name}\n\nA switchboard plugin.\n\n    {build}\n    switchboard check {name}.wasm\n"))?;
            Ok(Created { dir, build, wasm: format!("{name}.wasm") })
        }
    }
}
