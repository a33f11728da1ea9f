//! `switchboard new`: each language's project builds outside the repository with the
//! command it prints (toolchains fetched from nothing: the pinned crates, PyPI wheels and
//! npm packages), passes `check`, and answers the seed echo exchange.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn empty_temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-e2e-new-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Fails the test, saying what to install, unless `cmd` runs and succeeds.
fn require(cmd: &[&str], what: &str) {
    let ok = Command::new(cmd[0]).args(&cmd[1..]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "`{}` failed: {what}", cmd.join(" "));
}

/// The toolchain `lang` builds with must be installed (`.ci/run` installs it).
fn require_toolchain(lang: &str) {
    match lang {
        "python" => {
            require(&["python3", "-c", "import venv, ensurepip"], "python3 with venv is required (Debian: apt-get install python3-venv)")
        }
        "js" => {
            require(&["node", "-e", "process.exit(Number(process.versions.node.split('.')[0]) >= 20 ? 0 : 1)"], "node >= 20 is required");
            require(&["npm", "--version"], "npm is required (Debian: apt-get install npm)");
        }
        _ => {}
    }
}

/// `switchboard new NAME --lang LANG [--world WORLD]` in `dir`, then the `build:` line it
/// printed, run as printed; returns the plugin it built.
fn new_and_build(dir: &Path, name: &str, lang: &str, world: Option<&str>) -> PathBuf {
    require_toolchain(lang);
    let mut args = vec!["new", name, "--lang", lang];
    if let Some(world) = world {
        args.extend(["--world", world]);
    }
    let out = Command::new(binary()).args(&args).current_dir(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "new failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("created ./{name}\n")) && stdout.contains(&format!("check: switchboard check {name}.wasm\n")),
        "{stdout}"
    );
    let build = stdout.lines().find_map(|l| l.strip_prefix("build: ")).unwrap_or_else(|| panic!("no build line in:\n{stdout}"));

    let built = Command::new("bash").arg("-c").arg(build).current_dir(dir).output().unwrap();
    assert!(
        built.status.success(),
        "{build} failed:\n{}\n{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = dir.join(name).join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "{build} made no {}", wasm.display());
    wasm
}

/// `check` accepts `wasm` as `world` with the template's describe() info.
fn assert_checks(wasm: &Path, name: &str, world: &str, listen: &str) {
    let (code, stdout, stderr) = run(&["check", wasm.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for want in [format!("name     {name}\n"), format!("world    {world}"), format!("listen   {listen}\n")] {
        assert!(stdout.contains(&want), "no {want:?} in:\n{stdout}");
    }
}

/// The seed echo transcript passes against `wasm`, and so does the copy `new` put beside it.
fn assert_echo_transcript(wasm: &Path) {
    let transcript = repo_file("tests/transcripts/echo.transcript");
    let copy = wasm.with_file_name("echo.transcript");
    let (code, stdout, stderr) = run(&["test", wasm.to_str().unwrap(), &transcript, copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
}

#[test]
fn new_rust_project_builds_checks_and_echoes() {
    let dir = empty_temp_dir("rust");
    let wasm = new_and_build(&dir, "hello", "rust", None);
    assert_checks(&wasm, "hello", "full-plugin", "tcp:50007");

    let server = Server::start(&["--plugin", &format!("{}@127.0.0.1:0", wasm.display())], 1);
    seed_echo_client(server.addr(0), &[b"hello\n", b"second line\n"]);

    // A second `new` into the now non-empty directory is refused, and so is a bad name.
    let again = Command::new(binary()).args(["new", "hello", "--lang", "rust"]).current_dir(&dir).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists and is not an empty directory"));
    let bad = Command::new(binary()).args(["new", "../x", "--lang", "rust"]).current_dir(&dir).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid plugin name"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn new_python_project_builds_checks_and_passes_the_echo_transcript() {
    let dir = empty_temp_dir("python");
    let wasm = new_and_build(&dir, "hello", "python", None);
    assert_checks(&wasm, "hello", "full-plugin", "tcp:50007");
    assert_echo_transcript(&wasm);
    let bad = Command::new(binary()).args(["new", "hello.py", "--lang", "python"]).current_dir(&dir).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("invalid plugin name"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn new_js_project_builds_checks_and_passes_the_echo_transcript() {
    let dir = empty_temp_dir("js");
    let wasm = new_and_build(&dir, "hello", "js", None);
    assert_checks(&wasm, "hello", "full-plugin", "tcp:50007");
    assert_echo_transcript(&wasm);
    let again = Command::new(binary()).args(["new", "hello", "--lang", "js"]).current_dir(&dir).output().unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--world datagram` in Python and JavaScript: a UDP-only plugin that answers a datagram.
#[test]
fn new_datagram_projects_in_python_and_js_answer_a_datagram() {
    let dir = empty_temp_dir("datagram");
    for (name, lang) in [("dgram-py", "python"), ("dgram-js", "js")] {
        let wasm = new_and_build(&dir, name, lang, Some("datagram"));
        assert_checks(&wasm, name, "datagram-plugin", "udp:50007");
        let server = Server::start(&["--plugin", &format!("{}@udp:127.0.0.1:0", wasm.display())], 1);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        client.send_to(b"ping", server.addr(0)).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).unwrap_or_else(|e| panic!("{name}: no answer to a datagram: {e}"));
        assert_eq!((&buf[..n], from), (&b"Echo=>ping"[..], server.addr(0)), "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
