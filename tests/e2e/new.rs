//! `switchboard new`: the generated project builds outside the repository with the command
//! it prints, passes `check`, and serves the seed echo exchange.

use std::process::Command;

use crate::support::*;

fn empty_temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-e2e-new-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn new_rust_project_builds_checks_and_echoes() {
    let dir = empty_temp_dir("rust");
    let out = Command::new(binary()).args(["new", "hello", "--lang", "rust"]).current_dir(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "new failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let build = stdout.lines().find_map(|l| l.strip_prefix("build: ")).unwrap_or_else(|| panic!("no build line in:\n{stdout}"));

    let built = Command::new("bash").arg("-c").arg(build).current_dir(&dir).output().unwrap();
    assert!(built.status.success(), "{build} failed:\n{}", String::from_utf8_lossy(&built.stderr));
    let wasm = dir.join("hello/hello.wasm");

    let (code, stdout, stderr) = run(&["check", wasm.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("name     hello") && stdout.contains("world    full-plugin"), "{stdout}");

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
