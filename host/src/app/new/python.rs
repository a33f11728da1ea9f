//! The Python template: `app.py` beside the Python SDK (`switchboard_sdk/`) and the WIT,
//! built by the componentize-py that `plugins/python/requirements.txt` pins (with its
//! hashes), installed into a virtualenv in the project.

use std::path::Path;

use super::{NewError, World, embedded, readme, write, write_tree};

/// The repository's pins for componentize-py, as its own Python plugins are built.
const REQUIREMENTS: &str = include_str!("../../../../plugins/python/requirements.txt");

/// `requirements.txt`: the repository's pins (every line but its comments) under a header
/// of our own.
fn requirements() -> String {
    let mut out = String::from(
        "# The plugin toolchain, pinned exactly as switchboard's own Python plugins are built:\n\
         # pip checks every download against these hashes (wheels only, nothing is compiled).\n",
    );
    for line in REQUIREMENTS.lines().filter(|l| !l.trim_start().starts_with('#')) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The echo-shaped handler for `world`.
fn app_py(name: &str, world: World) -> String {
    let imports = if world.streams() { "plugin_info, serve, setting" } else { "plugin_info, setting" };
    let listen = world.listen();
    let mut out = format!(
        r#""""{name}: every chunk read comes back as ``Echo=>`` + chunk (setting ``PREFIX`` replaces ``Echo=>``).

Rules of a plugin: no sockets of its own (the host owns the network), settings arrive as
environment variables (``switchboard serve --set {name}.KEY=VALUE``), files only under the
folder the host grants. componentize-py looks for the classes below in this module.
"""

from switchboard_sdk import {imports}

NAME = "{name}"
VERSION = "0.1.0"


def prefix():
    return setting("PREFIX", "Echo=>").encode()
"#
    );
    if world.streams() {
        out.push_str(
            r#"

def echo(conn):
    """Until the client closes its side: read a chunk, send the prefix and the chunk."""
    reply_prefix = prefix()
    while data := conn.recv():
        conn.sendall(reply_prefix + data)
"#,
        );
    }
    out.push_str(&format!(
        r#"

class Meta:
    def describe(self):
        return plugin_info(NAME, VERSION, "replies Echo=> + each chunk read (PREFIX)", ["{listen}"])
"#
    ));
    if world.streams() {
        out.push_str(
            r#"

class Handler:
    def handle_connection(self, info, input, output):
        serve(echo, info, input, output)
"#,
        );
    }
    if world.datagrams() {
        out.push_str(
            r#"

class DatagramHandler:
    def handle_datagram(self, peer, payload):
        return [prefix() + payload]
"#,
        );
    }
    out
}

/// Writes the project; returns its build command.
pub(super) fn write_project(dir: &Path, name: &str, world: World) -> Result<String, NewError> {
    write_tree(dir, "wit/", embedded::WIT)?;
    write_tree(dir, "switchboard_sdk/", embedded::PYTHON_SDK)?;
    write(dir, "requirements.txt", &requirements())?;
    write(dir, "app.py", &app_py(name, world))?;
    write(dir, ".gitignore", "/.venv/\n__pycache__/\n*.wasm\n")?;
    let build = format!(
        "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/componentize-py -d wit -w {} componentize app -o {name}.wasm",
        world.wit_name()
    );
    let notes = format!(
        "The handler is `app.py`; `switchboard_sdk/` (the Python SDK) and `wit/` (the contract) came\n\
         with `switchboard new`, matching the host that wrote them. The build makes a virtualenv in\n\
         `.venv` with the pinned componentize-py (python3 with venv; Debian: `apt-get install\n\
         python3-venv`); after the first time, rebuilding is the last command alone:\n\n    \
         .venv/bin/componentize-py -d wit -w {} componentize app -o {name}.wasm\n\n\
         Only the standard library is there: no sockets, threads or subprocesses.\n",
        world.wit_name()
    );
    write(dir, "README.md", &readme(name, world, &build, &notes))?;
    Ok(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_keep_the_repositorys_pins_and_hashes() {
        let ours = requirements();
        let pins: Vec<&str> = REQUIREMENTS.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
        assert!(pins.iter().any(|l| l.contains("componentize-py==")) && pins.iter().any(|l| l.contains("--hash=sha256:")));
        for pin in pins {
            assert!(ours.lines().any(|l| l == pin), "{pin:?} missing from:\n{ours}");
        }
        assert!(!ours.contains("xtask"), "{ours}");
    }
}
