//! `switchboard check` and `serve` on things that are not plugins.

use std::process::{Command, Stdio};

use crate::support::*;

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn assert_refused(args: &[&str], reason: &str) {
    let (code, _, stderr) = run(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(stderr.contains(reason), "{args:?}: expected {reason:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
}

#[test]
fn check_reports_world_and_describe_info() {
    let echo = plugin("echo");
    let (code, stdout, stderr) = run(&["check", echo.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for expected in ["world    full-plugin", "name     echo", "listen   tcp:50007", "sha256   ", "compile  "] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let (code, stdout, _) = run(&["check", fixture("misbehave").to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("world    stream-plugin (exports meta, handler)"), "{stdout}");
}

#[test]
fn check_and_serve_refuse_what_is_not_a_plugin_with_a_reason() {
    let manifest = &repo_file("Cargo.toml");
    let core = temp_file("core.wasm", b"\0asm\x01\0\0\0");
    let cli = fixture("hello-cli");
    let cases = [
        (manifest.to_string(), "not a WebAssembly file"),
        (core.display().to_string(), "core WebAssembly module, not a component"),
        (cli.display().to_string(), "lacks the exports switchboard:plugin/meta@0.1.2"),
        ("/nonexistent/x.wasm".to_string(), "cannot read it"),
    ];
    for (path, reason) in &cases {
        assert_refused(&["check", path], reason);
        assert_refused(&["serve", "--plugin", &format!("{path}@127.0.0.1:0")], reason);
    }
    // One bad file among good ones still fails check, naming the bad one.
    let echo = plugin("echo");
    let (code, stdout, stderr) = run(&["check", echo.to_str().unwrap(), manifest]);
    assert_ne!(code, 0);
    assert!(stdout.contains("echo.wasm: ok") && stderr.contains("Cargo.toml: error"), "{stdout}\n{stderr}");
}

#[test]
fn serve_refuses_bad_arguments_with_a_reason() {
    let echo = plugin("echo");
    let spec = format!("{}@127.0.0.1:0", echo.display());
    assert_refused(&["serve", "--plugin", &spec, "--set", "ehco.PREFIX=x"], "no plugin named \"ehco\"");
    assert_refused(&["serve", "--plugin", &spec, "--set", "PREFIX=x"], "expected NAME.KEY=VALUE");
    assert_refused(&["serve", "--plugin", &format!("{}@127.0.0.1:99999", echo.display())], "not a port number");
    assert_refused(&["serve"], "no plugins to serve");
    assert_refused(&["serve", "--plugin", &spec, "--plugin", &spec], "two plugins are named \"echo\"");
}

/// What a new user tripped on: each refusal says what is wrong and what is allowed, and
/// blames the setting, not the plugin.
#[test]
fn serve_and_connect_name_the_flag_that_is_wrong() {
    let echo = plugin("echo");
    let spec = format!("{}@127.0.0.1:0", echo.display());
    let e = echo.display().to_string();
    assert_refused(&["serve", "--plugin", &spec, "--max-connections", "0"], "at least 1");
    // More connections than the kernel's memory-map areas can hold: refused at the start,
    // with the numbers, instead of failing instantiations under load.
    let max_map_count: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap().trim().parse().unwrap();
    // (Two areas per pool slot and two per live instance, with memory images copied in.)
    let too_many = (max_map_count / 4 + 1000).to_string();
    assert_refused(
        &["serve", "--plugin", &spec, "--max-connections", &too_many],
        &format!("memory-map areas, but vm.max_map_count is {max_map_count}: lower --max-connections to at most"),
    );
    assert_refused(&["serve", "--plugins", "nonexistent-dir"], "--plugins nonexistent-dir: no such directory");
    for tiny_or_huge in ["64", "64k", "1TiB"] {
        assert_refused(&["serve", "--plugin", &spec, "--memory-limit", tiny_or_huge], "a memory limit must be from 1MiB to 4GiB");
    }
    assert_refused(
        &["serve", "--plugin", &spec, "--memory-limit", "1MiB"],
        "needs more memory at start than the memory limit of 1MiB allows",
    );
    assert_refused(&["serve", "--plugin", &format!("{e}@tpc:7007")], "unknown transport \"tpc\" (did you mean tcp?");
    assert_refused(&["serve", "--plugin", &format!("{e}@serial:/dev/ttyS0:abc")], "baud rate \"abc\" is not a number");
    assert_refused(&["serve", "--plugin", &format!("{e}@serial:/dev/ttyS0:123")], "123 is not a baud rate");
    // One rule for repeated flags: each key once.
    assert_refused(&["serve", "--plugin", &spec, "--set", "echo.PREFIX=a", "--set", "echo.PREFIX=b"], "--set echo.PREFIX is given twice");
    assert_refused(&["serve", "--plugin", &spec, "--dir", "echo=/tmp", "--dir", "echo=/"], "--dir echo is given twice");
    assert_refused(&["connect", "127.0.0.1:9", "--plugin", &e, "--set", "FILE=a", "--set", "FILE=b"], "--set FILE is given twice");
    // Every default once in --help.
    let (_, help, _) = run(&["serve", "--help"]);
    // (`off` is the default of --max-duration, --keepalive, --max-per-ip and --rate-per-ip.)
    assert!(!help.contains("[default: no limit] [default: 0]") && help.matches("[default: off]").count() == 4, "{help}");
}

#[test]
fn a_closed_stdout_ends_check_quietly() {
    // `switchboard check plugins/*.wasm | head -0`: the reader is gone before the first line.
    let mut child = Command::new(binary())
        .args(["check", plugin("echo").to_str().unwrap(), plugin("chat").to_str().unwrap(), plugin("getfile").to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running switchboard");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "a closed stdout is not an error to report: {stderr}");
}
