//! `switchboard check` and `serve` on things that are not plugins.

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
        (cli.display().to_string(), "lacks the exports switchboard:plugin/meta@0.1.0"),
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
