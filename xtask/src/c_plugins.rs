//! Plugins written in C: `plugins/c/NAME/*.c` into `plugins/NAME.wasm`.
//!
//! Every tool is pinned and installed under `<target>/langs/c`, never globally:
//! - zig's clang + wasi-libc and wasm-tools from PyPI (`plugins/c/requirements.txt`, wheels
//!   checked against their hashes) into the virtualenv `<target>/langs/c/venv`;
//! - wit-bindgen's C generator from crates.io (`cargo install wit-bindgen-cli` at
//!   [`WIT_BINDGEN`], the version the Rust plugins use) into `<target>/langs/c/wit-bindgen`
//!   (the first install compiles it: a few minutes);
//! - the preview-1 reactor adapter from the crate `wasi-preview1-component-adapter-provider`
//!   (an xtask dependency, the host's wasmtime generation).
//!
//! A build: `wit-bindgen c --world stream-plugin wit/` writes the bindings, `zig cc
//! --target=wasm32-wasi -mexec-model=reactor` compiles them with the plugin into a
//! preview-1 core module, and `wasm-tools component new --adapt` makes it a component.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::langs::{is_fresh, virtualenv};
use crate::run;

/// The wit-bindgen-cli release (the same as the workspace's `wit-bindgen` crate).
const WIT_BINDGEN: &str = "0.61.1";

/// One C plugin: `plugins/c/<name minus "-c">/` holds its sources.
struct CPlugin {
    /// Output stem: `plugins/NAME.wasm`.
    name: &'static str,
    /// The folder of its `.c` files.
    source: &'static str,
    /// The world in `wit/switchboard.wit`.
    world: &'static str,
}

const PLUGINS: &[CPlugin] = &[CPlugin { name: "echo-c", source: "plugins/c/echo", world: "stream-plugin" }];

/// Whether `name` is one of these plugins (each shares its Rust twin's default listener).
pub fn is_twin(name: &str) -> bool {
    PLUGINS.iter().any(|p| p.name == name)
}

/// Installs the pinned C toolchain (if needed) and builds every C plugin into `plugins/`.
pub fn build(root: &Path, target: &Path) -> Result<()> {
    let dir = target.join("langs/c");
    let mut stale = Vec::new();
    for plugin in PLUGINS {
        let out = root.join("plugins").join(format!("{}.wasm", plugin.name));
        let inputs = [root.join(plugin.source), root.join("wit"), root.join("plugins/c/requirements.txt")];
        if is_fresh(&out, &inputs)? {
            eprintln!("xtask: {} is up to date", out.display());
        } else {
            stale.push((plugin, out));
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    let venv = dir.join("venv");
    virtualenv(&root.join("plugins/c/requirements.txt"), &venv)
        .context("installing zig and wasm-tools for the C plugins (needs python3 with venv)")?;
    let wit_bindgen = wit_bindgen(&dir)?;
    let adapter = dir.join("wasi_snapshot_preview1.reactor.wasm");
    std::fs::write(&adapter, wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
        .with_context(|| format!("writing {}", adapter.display()))?;
    for (plugin, out) in stale {
        let work = dir.join(plugin.name);
        let _ = std::fs::remove_dir_all(&work);
        let gen_dir = work.join("bindings");
        std::fs::create_dir_all(&gen_dir)?;
        run(Command::new(&wit_bindgen).current_dir(root).args(["c", "--world", plugin.world, "wit", "--out-dir"]).arg(&gen_dir))?;
        let mut sources = c_files(&root.join(plugin.source))?;
        sources.extend(c_files(&gen_dir)?);
        let core = work.join("core.wasm");
        let mut cc = Command::new(venv.join("bin/python"));
        cc.current_dir(root)
            .args([
                "-m",
                "ziglang",
                "cc",
                "--target=wasm32-wasi",
                "-mexec-model=reactor",
                "-O2",
                "-Wl,--strip-debug",
                "-Wall",
                "-Werror",
                "-I",
            ])
            .arg(&gen_dir)
            .args(&sources)
            .arg(gen_dir.join(format!("{}_component_type.o", plugin.world.replace('-', "_"))))
            .arg("-o")
            .arg(&core);
        run(&mut cc)?;
        let component = work.join(format!("{}.wasm", plugin.name));
        run(Command::new(venv.join("bin/wasm-tools"))
            .args(["component", "new"])
            .arg(&core)
            .arg("--adapt")
            .arg(format!("wasi_snapshot_preview1={}", adapter.display()))
            .arg("-o")
            .arg(&component))?;
        std::fs::rename(&component, &out).with_context(|| format!("moving {} to {}", component.display(), out.display()))?;
        eprintln!("xtask: built {}", out.display());
    }
    Ok(())
}

/// The pinned wit-bindgen, installed by `cargo install` when absent.
fn wit_bindgen(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("wit-bindgen");
    let bin = root.join("bin/wit-bindgen");
    let stamp = root.join("switchboard-version");
    if !bin.exists() || std::fs::read_to_string(&stamp).ok().as_deref() != Some(WIT_BINDGEN) {
        eprintln!("xtask: installing wit-bindgen-cli {WIT_BINDGEN} (compiles once, a few minutes)");
        run(Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "--locked", "--quiet", "wit-bindgen-cli", "--version", WIT_BINDGEN, "--root"])
            .arg(&root))?;
        std::fs::write(&stamp, WIT_BINDGEN)?;
    }
    Ok(bin)
}

/// The `.c` files directly in `dir`, sorted.
fn c_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "c") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
