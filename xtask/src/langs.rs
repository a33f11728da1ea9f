//! Plugins written in Python (componentize-py) and JavaScript (componentize-js).
//!
//! Each toolchain is pinned and installed under the target directory, never globally:
//! - Python: `plugins/python/requirements.txt` (exact versions with their wheels' hashes)
//!   into a virtualenv at `<target>/langs/venv`;
//! - JavaScript: `plugins/js/package.json` + `package-lock.json`, installed by npm in
//!   `<target>/langs/js` and checked against the lock ([`crate::npm_lock`]);
//! - the end-to-end tests' Python (`tests/e2e/tools/requirements.txt`) into a
//!   virtualenv at `<target>/e2e-python` ([`test_python`]).
//!
//! An install is redone only when its pin file changes, and a plugin is rebuilt only when
//! a file it is built from is newer than its `.wasm` (a Python build takes ~15 s).
//! `cargo xtask build` builds these plugins when `python3` and `node`/`npm` are on the
//! PATH and says why it skipped them otherwise; `cargo xtask test` requires them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::{npm_lock, run};

/// Whether the language toolchains must be there.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Build the plugins if `python3` and `node` are installed; otherwise say so and go on.
    IfPresent,
    /// Fail when a toolchain is missing (`cargo xtask test`).
    Required,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Python,
    Js,
}

/// One plugin built from another language into `plugins/NAME.wasm`.
struct LangPlugin {
    /// Output stem, and so the plugin's name on the command line (`--set echo-py.PREFIX=`).
    name: &'static str,
    lang: Lang,
    /// Python: the directory holding `app.py`; JavaScript: the module file.
    source: &'static str,
    /// The world in `wit/switchboard.wit` (JavaScript: in `plugins/js/wit/worlds.wit`).
    world: &'static str,
}

const PLUGINS: &[LangPlugin] = &[
    LangPlugin { name: "echo-py", lang: Lang::Python, source: "plugins/python/echo", world: "full-plugin" },
    LangPlugin { name: "chat-py", lang: Lang::Python, source: "plugins/python/chat", world: "stream-plugin" },
    LangPlugin { name: "echo-js", lang: Lang::Js, source: "plugins/js/echo/echo.js", world: "full-plugin" },
    LangPlugin { name: "chat-js", lang: Lang::Js, source: "plugins/js/chat/chat.js", world: "stream-plugin" },
];

/// Whether `name` is one of these plugins; each has the default listener of its Rust twin
/// (echo-py and echo-js: tcp:50007, like echo), so they cannot all be served on it at once.
pub fn is_twin(name: &str) -> bool {
    PLUGINS.iter().any(|p| p.name == name)
}

/// Files every plugin of a language is built from, besides its own source.
fn shared_inputs(lang: Lang) -> &'static [&'static str] {
    match lang {
        Lang::Python => &["wit", "plugins/python/switchboard_sdk", "plugins/python/requirements.txt"],
        Lang::Js => &["wit", "plugins/js/sdk", "plugins/js/wit", "plugins/js/package-lock.json"],
    }
}

/// Installs the pinned toolchains (if needed) and builds every Python and JavaScript plugin
/// into `plugins/`.
pub fn build(root: &Path, target: &Path, need: Need) -> Result<()> {
    let tools: [(&str, &[&str]); 3] = [
        ("python3 with venv", &["python3", "-c", "import venv, ensurepip"]),
        ("node", &["node", "--version"]),
        ("npm", &["npm", "--version"]),
    ];
    let missing: Vec<&str> = tools.iter().filter(|(_, cmd)| !works(cmd)).map(|(name, _)| *name).collect();
    if !missing.is_empty() {
        let msg = format!("{} not found: Python and JavaScript plugins need python3 (with venv) and node/npm", missing.join(", "));
        if need == Need::Required {
            bail!("{msg}");
        }
        eprintln!("xtask: skipping {}: {msg}", PLUGINS.iter().map(|p| p.name).collect::<Vec<_>>().join(", "));
        return Ok(());
    }
    let dir = target.join("langs");
    let componentize_py = python_toolchain(root, &dir)?;
    let componentize_js = js_toolchain(root, &dir)?;
    let js_wit = js_wit(root, &dir)?;
    for plugin in PLUGINS {
        let out = root.join("plugins").join(format!("{}.wasm", plugin.name));
        let mut inputs = vec![root.join(plugin.source)];
        inputs.extend(shared_inputs(plugin.lang).iter().map(|p| root.join(p)));
        if is_fresh(&out, &inputs)? {
            eprintln!("xtask: {} is up to date", out.display());
            continue;
        }
        let tmp = dir.join(format!("{}.wasm", plugin.name));
        let mut cmd;
        match plugin.lang {
            Lang::Python => {
                cmd = Command::new(&componentize_py);
                // VIRTUAL_ENV: search the venv's site-packages, not the system's.
                cmd.env("VIRTUAL_ENV", dir.join("venv"))
                    .args(["-q", "-d", "wit", "-w", plugin.world, "componentize", "app", "-p", plugin.source, "-p", "plugins/python", "-o"])
                    .arg(&tmp);
            }
            Lang::Js => {
                cmd = Command::new(&componentize_js);
                // Without `-d http` the component imports wasi:http, which the host does not provide.
                cmd.arg(plugin.source)
                    .arg("--wit")
                    .arg(&js_wit)
                    .args(["--world-name", plugin.world, "-d", "http", "-d", "fetch-event", "-o"])
                    .arg(&tmp);
            }
        }
        cmd.current_dir(root);
        run(&mut cmd)?;
        std::fs::rename(&tmp, &out).with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;
        eprintln!("xtask: built {}", out.display());
    }
    Ok(())
}

/// Runs the Python SDK's native unit tests (`cargo xtask test`): framing, and Connection over stand-in bindings.
pub fn test(root: &Path) -> Result<()> {
    // -B: no __pycache__ in the source tree.
    run(Command::new("python3").current_dir(root).args(["-B", "plugins/python/tests/test_framing.py"]))?;
    run(Command::new("python3").current_dir(root).args(["-B", "plugins/python/tests/test_connection.py"]))?;
    // The JavaScript SDK under node's own test runner, its WIT imports stubbed.
    run(Command::new("node").current_dir(root).args(["--import", "./plugins/js/tests/register.mjs", "--test", "plugins/js/tests/"]))
}

/// A virtualenv with the pinned componentize-py; returns the path of its executable.
fn python_toolchain(root: &Path, dir: &Path) -> Result<PathBuf> {
    let venv = dir.join("venv");
    virtualenv(&root.join("plugins/python/requirements.txt"), &venv)?;
    Ok(venv.join("bin/componentize-py"))
}

/// The Python the end-to-end tests run (`tests/e2e/tools/requirements.txt` installed
/// in a virtualenv at `<target>/e2e-python`); returns its interpreter.
pub fn test_python(root: &Path, target: &Path) -> Result<PathBuf> {
    let venv = target.join("e2e-python");
    virtualenv(&root.join("tests/e2e/tools/requirements.txt"), &venv)?;
    Ok(venv.join("bin/python"))
}

/// Makes `venv` a virtualenv with exactly the requirements in `pins`, unless it already
/// is one (it remembers the pins it was made from).
pub(crate) fn virtualenv(pins: &Path, venv: &Path) -> Result<()> {
    let installed = venv.join("switchboard-requirements.txt");
    if !same_contents(pins, &installed) {
        let _ = std::fs::remove_dir_all(venv);
        run(Command::new("python3").args(["-m", "venv"]).arg(venv))
            .context("creating the virtualenv (Debian: apt-get install python3-venv)")?;
        // The pins carry hashes (pip then checks every download against them) and name
        // wheels only: no source build, whose tools could differ from machine to machine.
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "--require-hashes", "--only-binary", ":all:", "-r"])
            .arg(pins))?;
        std::fs::copy(pins, &installed)?;
    }
    Ok(())
}

/// The pinned componentize-js, installed from the committed lock; returns the path of its
/// executable.
///
/// `npm install` in a copy of `plugins/js`, then [`npm_lock`] checks that everything it
/// installed is exactly what the committed lock pins (see that module for why neither
/// `npm ci` nor comparing the lock's bytes afterwards works). A verified install is
/// stamped with the lock it was checked against and redone only when the lock changes.
/// (package.json also names preview2-shim: componentize-js 0.23.0 imports it without
/// declaring it.)
fn js_toolchain(root: &Path, dir: &Path) -> Result<PathBuf> {
    let js = dir.join("js");
    let lock_path = root.join("plugins/js/package-lock.json");
    let manifest_path = root.join("plugins/js/package.json");
    let stamp = js.join("switchboard-verified-lock.json");
    let read_json = |path: &Path| -> Result<serde_json::Value> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    };
    let (manifest, lock) = (read_json(&manifest_path)?, read_json(&lock_path)?);
    npm_lock::check_lock_matches_manifest(&manifest, &lock)?;
    if !same_contents(&lock_path, &stamp) || !js.join("node_modules").is_dir() {
        let _ = std::fs::remove_file(&stamp);
        std::fs::create_dir_all(&js)?;
        std::fs::copy(&manifest_path, js.join("package.json"))?;
        std::fs::copy(&lock_path, js.join("package-lock.json"))?;
        run(Command::new("npm").current_dir(&js).args(["install", "--no-audit", "--no-fund"]))?;
        npm_lock::check_installed_against_lock(&lock, &read_json(&js.join("node_modules/.package-lock.json"))?)?;
        std::fs::copy(&lock_path, &stamp)?;
    }
    Ok(js.join("node_modules/.bin/componentize-js"))
}

/// The WIT folder componentize-js reads: `plugins/js/wit` (worlds that also name
/// `wasi:cli/environment`) as the root package, and the contract in `wit/` as its deps.
fn js_wit(root: &Path, dir: &Path) -> Result<PathBuf> {
    let wit = dir.join("js-wit");
    let _ = std::fs::remove_dir_all(&wit);
    copy_tree(&root.join("plugins/js/wit"), &wit)?;
    copy_tree(&root.join("wit/deps"), &wit.join("deps"))?;
    for entry in std::fs::read_dir(root.join("wit"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "wit") {
            std::fs::create_dir_all(wit.join("deps/switchboard"))?;
            std::fs::copy(&path, wit.join("deps/switchboard").join(path.file_name().unwrap()))?;
        }
    }
    Ok(wit)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Whether a command runs and succeeds.
pub(crate) fn works(cmd: &[&str]) -> bool {
    Command::new(cmd[0]).args(&cmd[1..]).output().is_ok_and(|o| o.status.success())
}

fn same_contents(a: &Path, b: &Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

/// Whether `out` exists and is newer than every file under `inputs`.
pub(crate) fn is_fresh(out: &Path, inputs: &[PathBuf]) -> Result<bool> {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else { return Ok(false) };
    let mut newest = SystemTime::UNIX_EPOCH;
    for input in inputs {
        newest = newest.max(newest_mtime(input)?);
    }
    Ok(newest < built)
}

fn newest_mtime(path: &Path) -> Result<SystemTime> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mut newest = meta.modified()?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_name() != "__pycache__" {
                newest = newest.max(newest_mtime(&entry.path())?);
            }
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plugin_source_exists() {
        let root = crate::workspace_root();
        for p in PLUGINS {
            assert!(root.join(p.source).exists(), "{}: {} is missing", p.name, p.source);
            for input in shared_inputs(p.lang) {
                assert!(root.join(input).exists(), "{}: {input} is missing", p.name);
            }
        }
    }

    #[test]
    fn toolchains_are_pinned_exactly() {
        let root = crate::workspace_root();
        let py = std::fs::read_to_string(root.join("plugins/python/requirements.txt")).unwrap();
        assert!(py.lines().any(|l| l.trim() == "componentize-py==0.25.1 \\"), "{py}");
        let tests = std::fs::read_to_string(root.join("tests/e2e/tools/requirements.txt")).unwrap();
        assert!(tests.lines().any(|l| l.trim() == "prometheus-client==0.26.0 \\"), "{tests}");
        for pins in [py, tests] {
            // Hash-checking mode: every requirement pinned with == and at least one hash.
            let requirements: Vec<String> = pins
                .replace("\\\n", " ")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            assert!(!requirements.is_empty());
            for line in &requirements {
                assert!(line.contains("==") && line.contains("--hash=sha256:"), "not pinned with a hash: {line}");
            }
        }
        let js = std::fs::read_to_string(root.join("plugins/js/package.json")).unwrap();
        assert!(js.contains(r#""@bytecodealliance/componentize-js": "0.23.0""#), "{js}");
    }
}
