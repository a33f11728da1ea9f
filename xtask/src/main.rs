//! `cargo xtask build | demo | test | bench`: the project's two-command workflow.
//!
//! - `build`: release host + every shipped plugin (copied to `plugins/NAME.wasm`) + the
//!   test fixtures (copied to `<target>/fixtures/`) + the Python and JavaScript plugins
//!   when python3 and node are installed ([`langs`]) + the C plugins ([`c_plugins`]).
//! - `demo`: build, then serve every `plugins/*.wasm` on its default listeners.
//! - `test`: build (the Python and JavaScript plugins included, or fail), then run the
//!   whole suite (unit tests, SDK tests, end-to-end tests).
//! - `bench [ARGS]`: build, then run `switchboard-bench` (xtask/bench) in release mode
//!   against the built host and plugins.
//!
//! The target directory comes from `cargo metadata`, so `CARGO_TARGET_DIR` is honoured.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod c_plugins;
mod langs;
mod npm_lock;

/// Plugins built into `plugins/` (the folder users drop .wasm files into).
const SHIPPED: &[&str] = &["echo", "chat", "getfile"];
/// Test fixtures: built like plugins, never shipped into `plugins/`.
const FIXTURES: &[&str] = &["misbehave", "hello-cli", "legacy-echo", "big-describe", "tls-whoami"];
/// The folder `cargo xtask demo` grants getfile (relative to the workspace root).
const DEMO_FILES: &str = "xtask/demo/getfile";
const WASM_TARGET: &str = "wasm32-wasip2";
const PLUGIN_PROFILE: &str = "plugin";

/// `cargo xtask --help`.
const USAGE: &str = "\
usage: cargo xtask <build|demo|test|bench> [ARGS]
  build  release host + plugins into plugins/ (Python/JavaScript twins when python3 and node are there)
  demo   build, then serve every plugins/*.wasm on its default ports (getfile serves xtask/demo/getfile)
  test   build, then run the whole test suite (what CI runs; needs python3 with venv, node >= 20, npm)
  bench  build, then run the benchmarks (cargo xtask bench --help lists their options)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or_default();
    let rest = args.get(1..).unwrap_or_default();
    let wants_help = |args: &[String]| args.iter().any(|a| a == "--help" || a == "-h");
    let root = workspace_root();
    let result = match task {
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        // Every task but bench (whose options the bench itself lists) takes no arguments.
        "build" | "demo" | "test" if wants_help(rest) => {
            println!("{USAGE}");
            Ok(())
        }
        "build" | "demo" | "test" if !rest.is_empty() => {
            eprintln!("xtask {task}: unexpected argument {:?}\n{USAGE}", rest[0]);
            return ExitCode::from(2);
        }
        "build" => build(&root, langs::Need::IfPresent).map(|_| ()),
        "demo" => demo(&root),
        "test" => test(&root),
        "bench" if wants_help(rest) => bench_help(&root),
        "bench" => bench(&root, rest.iter().cloned()),
        "" => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        other => {
            eprintln!("xtask: unknown task {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain once, without a backtrace: these are a user's errors to act on.
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root. `cargo run` tells the running xtask where its manifest is; the
/// compile-time path is only the fallback, because a target directory shared between
/// checkouts (`CARGO_TARGET_DIR`) can hand one checkout an xtask built in another.
fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The target directory, as cargo sees it.
fn target_dir(root: &Path) -> Result<PathBuf> {
    let out = cargo(root).args(["metadata", "--format-version", "1", "--no-deps"]).output().context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let dir = meta["target_directory"].as_str().context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

struct Built {
    host: PathBuf,
    fixtures: PathBuf,
}

fn build(root: &Path, langs: langs::Need) -> Result<Built> {
    let target = target_dir(root)?;
    run(cargo(root).args(["build", "--release", "--package", "switchboard", "--bin", "switchboard"]))?;
    let mut cmd = cargo(root);
    cmd.args(["build", "--profile", PLUGIN_PROFILE, "--target", WASM_TARGET]);
    for name in SHIPPED.iter().chain(FIXTURES) {
        cmd.args(["--package", name]);
    }
    run(&mut cmd)?;

    let out = target.join(WASM_TARGET).join(PLUGIN_PROFILE);
    for name in SHIPPED {
        let dest = root.join("plugins").join(format!("{name}.wasm"));
        std::fs::copy(out.join(format!("{name}.wasm")), &dest).with_context(|| format!("copying {name}.wasm"))?;
        eprintln!("xtask: built {}", dest.display());
    }
    let fixtures = target.join("fixtures");
    std::fs::create_dir_all(&fixtures)?;
    for name in FIXTURES {
        // A library's artifact is named with `_` for `-` (a binary's keeps its name).
        let built = [format!("{name}.wasm"), format!("{}.wasm", name.replace('-', "_"))]
            .into_iter()
            .map(|file| out.join(file))
            .find(|path| path.exists())
            .with_context(|| format!("fixture {name} was not built"))?;
        std::fs::copy(&built, fixtures.join(format!("{name}.wasm"))).with_context(|| format!("copying fixture {name}.wasm"))?;
    }
    langs::build(root, &target, langs)?;
    if langs == langs::Need::Required || langs::works(&["python3", "-c", "import venv, ensurepip"]) {
        c_plugins::build(root, &target)?;
    } else {
        eprintln!("xtask: skipping echo-c: its toolchain (zig, wasm-tools) is installed with python3 (with venv), not found");
    }
    let host = target.join("release").join("switchboard");
    eprintln!("xtask: built {}", host.display());
    Ok(Built { host, fixtures })
}

fn demo(root: &Path) -> Result<()> {
    let built = build(root, langs::Need::IfPresent)?;
    let mut plugins: Vec<PathBuf> = std::fs::read_dir(root.join("plugins"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    plugins.sort();
    let mut cmd = Command::new(&built.host);
    cmd.current_dir(root).arg("serve");
    for p in &plugins {
        let mut spec = p.strip_prefix(root).unwrap_or(p).as_os_str().to_owned();
        // The Python and JavaScript twins share the Rust plugins' default ports.
        if p.file_stem().and_then(|s| s.to_str()).is_some_and(|s| langs::is_twin(s) || c_plugins::is_twin(s)) {
            spec.push("@0");
        }
        cmd.arg("--plugin").arg(spec);
    }
    // getfile serves a small folder of its own, so its requests find something.
    if plugins.iter().any(|p| p.file_stem().is_some_and(|s| s == "getfile")) {
        cmd.arg("--dir").arg(format!("getfile={DEMO_FILES}"));
    }
    eprintln!("xtask: serving {} plugin(s); Ctrl-C to stop", plugins.len());
    run(&mut cmd)
}

fn bench(root: &Path, args: impl Iterator<Item = String>) -> Result<()> {
    let built = build(root, langs::Need::IfPresent)?;
    let mut cmd = cargo(root);
    cmd.args(["run", "--release", "--package", "switchboard-bench", "--", "--switchboard"]).arg(&built.host);
    cmd.arg("--plugins").arg(root.join("plugins")).arg("--fixtures").arg(&built.fixtures);
    run(cmd.args(args))
}

/// `cargo xtask bench --help`: the bench's own usage, without building the plugins first.
fn bench_help(root: &Path) -> Result<()> {
    run(cargo(root).args(["run", "--quiet", "--release", "--package", "switchboard-bench", "--", "--help"]))
}

fn test(root: &Path) -> Result<()> {
    let built = build(root, langs::Need::Required)?;
    langs::test(root)?;
    let python = langs::test_python(root, &target_dir(root)?)?;
    // Separate invocations keep each package's feature set, and so the release build of
    // wasmtime, identical to `build`'s.
    run(cargo(root).args(["test", "--release", "--package", "switchboard-sdk", "--package", "getfile"]))?;
    run(cargo(root).args(["test", "--package", "xtask"]))?;
    run(cargo(root)
        .args(["test", "--release", "--package", "switchboard"])
        .env("SWITCHBOARD_FIXTURES", &built.fixtures)
        .env("SWITCHBOARD_PLUGINS", root.join("plugins"))
        .env("SWITCHBOARD_E2E_PYTHON", &python))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_dir_comes_from_cargo() {
        let dir = target_dir(&workspace_root()).unwrap();
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(env) => assert_eq!(dir, PathBuf::from(env)),
            None => assert_eq!(dir, workspace_root().join("target")),
        }
    }
}
