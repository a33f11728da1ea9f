//! `switchboard new NAME --lang rust|python|js`: writes a plugin project in `./NAME` that
//! builds outside this repository, with the contract WIT and the language's SDK in it.
//!
//! Everything it writes is embedded in the binary (host/build.rs collects the
//! repository's `wit/`, `plugins/sdk`, `plugins/python/switchboard_sdk`, `plugins/js/sdk`
//! and `plugins/js/wit`; the toolchain pins come from the files the repository's own
//! builds use), so a project builds against exactly the contract this host checks, with
//! the same pinned tools.

mod js;
mod python;
mod rust;

use std::fmt;
use std::path::{Path, PathBuf};

/// The files embedded by host/build.rs: `(path under the folder, contents)`.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The language of a new plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// A Cargo project built for wasm32-wasip2 with the vendored Rust SDK.
    Rust,
    /// An `app.py` built by the pinned componentize-py, with the Python SDK beside it.
    Python,
    /// An `app.js` built by the pinned componentize-js (npm), with the JavaScript SDK.
    Js,
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

impl World {
    /// The world's name in the WIT (`full-plugin`).
    pub fn wit_name(self) -> &'static str {
        match self {
            World::Stream => "stream-plugin",
            World::Datagram => "datagram-plugin",
            World::Full => "full-plugin",
        }
    }

    /// Whether the plugin handles connections (stream and full).
    fn streams(self) -> bool {
        self != World::Datagram
    }

    /// Whether the plugin handles datagrams (datagram and full).
    fn datagrams(self) -> bool {
        self != World::Stream
    }

    /// The default listener the generated `describe()` names.
    fn listen(self) -> &'static str {
        if self == World::Datagram { "udp:50007" } else { "tcp:50007" }
    }
}

/// Why `new` wrote nothing (or stopped part way).
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// NAME is not usable as a directory, package name and file stem.
    #[error(
        "invalid plugin name {0:?}: use 1-64 ASCII letters, digits, '-' or '_', starting with a letter (it becomes the directory, the package name and NAME.wasm)"
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

/// Is `name` usable as a directory, a package name and a file stem?
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with("switchboard")
}

/// Writes `contents` at `dir/rel`, making the folders on the way.
fn write(dir: &Path, rel: &str, contents: &str) -> Result<(), NewError> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| NewError::Write { path: parent.to_path_buf(), source })?;
    }
    std::fs::write(&path, contents).map_err(|source| NewError::Write { path, source })
}

/// Writes every embedded file of `tree` under `dir/prefix`.
fn write_tree(dir: &Path, prefix: &str, tree: &[(&str, &str)]) -> Result<(), NewError> {
    for (rel, contents) in tree {
        write(dir, &format!("{prefix}{rel}"), contents)?;
    }
    Ok(())
}

/// The project README: what it is, how to build, check, test and serve it.
fn readme(name: &str, world: World, build: &str, notes: &str) -> String {
    let test = if world.streams() { format!("    switchboard test {name}.wasm echo.transcript\n") } else { String::new() };
    format!(
        "# {name}\n\nA switchboard plugin: every chunk a client sends comes back as `Echo=>` + chunk\n\
         (the `PREFIX` setting replaces `Echo=>`: `switchboard serve --set {name}.PREFIX=...`).\n\n\
         Build, check and try it:\n\n    {build}\n    \
         switchboard check {name}.wasm\n{test}    switchboard serve --plugin {name}.wasm\n\n{notes}"
    )
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
    // Every template answers the seed echo conversation (the `datagram` world over UDP only).
    if world.streams() {
        write(&dir, "echo.transcript", include_str!("../../../../tests/transcripts/echo.transcript"))?;
    }
    let build = match lang {
        Lang::Rust => rust::write_project(&dir, name, world)?,
        Lang::Python => python::write_project(&dir, name, world)?,
        Lang::Js => js::write_project(&dir, name, world)?,
    };
    Ok(Created { dir, build, wasm: format!("{name}.wasm") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_trees_hold_the_contract_and_every_sdk() {
        let has = |tree: &[(&str, &str)], rel: &str| tree.iter().any(|(r, _)| *r == rel);
        assert!(has(embedded::WIT, "switchboard.wit") && has(embedded::WIT, "deps/io/io.wit"));
        assert!(has(embedded::RUST_SDK, "Cargo.toml") && has(embedded::RUST_SDK, "src/lib.rs"));
        assert!(has(embedded::PYTHON_SDK, "__init__.py"));
        assert!(has(embedded::JS_SDK, "switchboard.js"));
        assert!(has(embedded::JS_WIT, "worlds.wit"));
        for tree in [embedded::WIT, embedded::RUST_SDK, embedded::PYTHON_SDK, embedded::JS_SDK, embedded::JS_WIT] {
            for (rel, _) in tree {
                assert!(!rel.contains("__pycache__") && !rel.starts_with("target/") && !rel.contains("node_modules"), "{rel}");
            }
        }
    }

    #[test]
    fn names_are_checked_before_anything_is_written() {
        let parent = std::env::temp_dir().join(format!("switchboard-new-names-{}", std::process::id()));
        for bad in ["", "../x", "1abc", "a b", "switchboard-x", "x.y", &"a".repeat(65)] {
            for lang in [Lang::Rust, Lang::Python, Lang::Js] {
                assert!(matches!(new_project(&parent, bad, lang, World::Full), Err(NewError::InvalidName(_))), "{bad:?}");
            }
        }
        assert!(!parent.exists());
    }

    /// Every language and world writes a project whose source names the world's handlers
    /// and nothing else.
    #[test]
    fn every_language_and_world_writes_its_handlers() {
        let parent = std::env::temp_dir().join(format!("switchboard-new-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        for (lang, source, stream, datagram) in [
            (Lang::Rust, "src/lib.rs", "impl StreamHandler", "impl DatagramHandler"),
            (Lang::Python, "app.py", "class Handler", "class DatagramHandler"),
            (Lang::Js, "app.js", "export const handler", "export const datagramHandler"),
        ] {
            for world in [World::Stream, World::Datagram, World::Full] {
                let name = format!("p-{lang:?}-{world:?}").to_lowercase();
                let created = new_project(&parent, &name, lang, world).unwrap();
                let text = std::fs::read_to_string(created.dir.join(source)).unwrap();
                assert_eq!(text.contains(stream), world.streams(), "{name}: {text}");
                assert_eq!(text.contains(datagram), world.datagrams(), "{name}: {text}");
                assert!(text.contains(world.listen()), "{name}: {text}");
                assert!(created.build.contains(&format!("{name}.wasm")), "{}", created.build);
                assert!(created.dir.join("README.md").is_file());
                assert_eq!(created.dir.join("echo.transcript").is_file(), world.streams(), "{name}");
            }
        }
        let _ = std::fs::remove_dir_all(&parent);
    }
}
