//! The Rust template: a Cargo project with its own `[workspace]`, the WIT in `wit/` and
//! the Rust SDK in `vendor/sdk`, built for wasm32-wasip2.

use std::path::Path;

use super::{NewError, World, embedded, readme, write, write_tree};

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
    let listen = world.listen();
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

/// Writes the project; returns its build command.
pub(super) fn write_project(dir: &Path, name: &str, world: World) -> Result<String, NewError> {
    write_tree(dir, "wit/", embedded::WIT)?;
    write_tree(dir, "vendor/sdk/", embedded::RUST_SDK)?;
    // The host's lock file pins the SDK's dependencies to the versions this host was built
    // and tested with; cargo drops the entries the plugin does not use.
    write(dir, "Cargo.lock", include_str!("../../../../Cargo.lock"))?;
    write(dir, "Cargo.toml", &cargo_toml(name))?;
    write(dir, "src/lib.rs", &lib_rs(name, world))?;
    write(dir, ".gitignore", "/target\n*.wasm\n")?;
    let stem = name.replace('-', "_");
    let build = format!(
        "cargo build --release --target wasm32-wasip2 && cp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{stem}.wasm\" {name}.wasm"
    );
    let notes = "The handler is in `src/lib.rs`; the SDK (`vendor/sdk`) and the contract (`wit/`) came with\n\
                 `switchboard new`, matching the host that wrote them.\n";
    write(dir, "README.md", &readme(name, world, &build, notes))?;
    Ok(build)
}
