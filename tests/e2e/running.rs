//! Running as a service: the signals (SIGHUP reloads, SIGUSR1 reports, neither kills),
//! an honest start (`watching DIR`, what is served and what was rejected), the access
//! log, one record per line in text and JSON, an invalid RUST_LOG refused, and systemd's
//! notification protocol and unit file.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// A fresh, empty folder for `test`.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-running-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `pred` holds for the server's log, or fails with the log.
fn wait_log(server: &Server, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = server.stderr();
        if pred(&log) {
            return log;
        }
        assert!(Instant::now() < deadline, "{what} never logged:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_and_sigusr1_reports_and_neither_kills() {
    let dir = scratch("signals");
    std::fs::copy(plugin("echo"), dir.join("echo.wasm")).unwrap();
    std::fs::write(dir.join("echo.toml"), "listen = [\"127.0.0.1:0\"]\n").unwrap();
    let mut server = Server::start(&["--plugins", dir.to_str().unwrap()], 1);
    assert_eq!(server.watching, vec![dir.display().to_string()], "no `watching DIR` line");
    wait_log(&server, "the start summary", |l| l.contains("serving echo") && l.contains("served=1"));
    seed_echo_client(server.addr(0), &[b"before"]);

    server.signal(libc::SIGHUP);
    let log = wait_log(&server, "the end of the reload", |l| l.contains("reload done"));
    assert!(log.contains("reload requested (SIGHUP)"), "{log}");
    assert!(server.alive(), "SIGHUP killed the server:\n{log}");
    seed_echo_client(server.addr(0), &[b"after a reload"]);

    // A sidecar made invalid is rejected by the reload, and echo keeps serving.
    std::fs::write(dir.join("echo.toml"), "listen = [\n").unwrap();
    server.signal(libc::SIGHUP);
    wait_log(&server, "a rejected reload", |l| l.matches("reload done").count() >= 2 && l.contains("rejected: "));
    seed_echo_client(server.addr(0), &[b"still served"]);

    server.signal(libc::SIGUSR1);
    let log = wait_log(&server, "the status", |l| l.contains("status: host"));
    let line =
        log.lines().find(|l| l.contains(" status ") && l.contains("plugin=echo")).unwrap_or_else(|| panic!("no echo status:\n{log}"));
    assert!(line.contains("served=3"), "three connections served: {line}");
    assert!(server.alive(), "SIGUSR1 killed the server");

    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0), "{}", server.stderr());
}

#[test]
fn an_empty_or_bad_folder_says_what_it_serves() {
    let dir = scratch("honest");
    let server = Server::start(&["--plugins", dir.to_str().unwrap()], 0);
    wait_log(&server, "serving nothing", |l| l.contains("serving no plugins") && l.contains("waiting for a *.wasm"));
    drop(server);

    std::fs::write(dir.join("junk.wasm"), b"not a component").unwrap();
    std::fs::copy(plugin("echo"), dir.join("echo.wasm")).unwrap();
    std::fs::write(dir.join("echo.toml"), "listen = [\"127.0.0.1:0\"]\n").unwrap();
    let server = Server::start(&["--plugins", dir.to_str().unwrap()], 1);
    let log = wait_log(&server, "the summary", |l| l.contains("serving echo; rejected: junk"));
    // One record, one line: the rejection of junk and its cause are on the same line.
    let rejected = log.lines().filter(|l| l.contains("plugin=junk")).count();
    assert_eq!(rejected, 1, "{log}");
}

#[test]
fn every_connection_gets_an_access_log_line() {
    let server = Server::start(&["--plugin", &format!("{}@127.0.0.1:0", plugin("echo").display())], 1);
    let mut s = connect(server.addr(0));
    assert!(echo_once(&mut s, b"twelve bytes"));
    drop(s);
    let log = wait_log(&server, "the access line", |l| l.contains("switchboard::access"));
    let line = log.lines().find(|l| l.contains("switchboard::access")).unwrap();
    for field in ["plugin=echo", "bytes_in=12", "bytes_out=18", "outcome=ok", "version=", "duration_ms=", "peer=127.0.0.1:"] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_the_connection_fields() {
    let server = Server::start(&["--log-format", "json", "--plugin", &format!("{}@127.0.0.1:0", plugin("echo").display())], 1);
    let mut s = connect(server.addr(0));
    assert!(echo_once(&mut s, b"json"));
    drop(s);
    let log = wait_log(&server, "the access line", |l| l.contains("switchboard::access"));
    let script = r#"
import json, sys
access = None
for line in sys.stdin:
    record = json.loads(line)
    if record.get("target") == "switchboard::access":
        access = record
assert access is not None, "no access record"
span = access["span"]
assert span["plugin"] == "echo" and span["peer"].startswith("127.0.0.1:") and int(span["id"]) >= 0, access
assert access["fields"]["outcome"] == "ok" and access["fields"]["bytes_in"] == 4, access
print("ok")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the seed clients need it too)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(log.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\nlog:\n{log}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_invalid_rust_log_is_an_error() {
    let out =
        Command::new(binary()).args(["check", plugin("echo").to_str().unwrap()]).env("RUST_LOG", "info,switchboard=loud").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {stderr}");
    assert!(stderr.contains("RUST_LOG=\"info,switchboard=loud\" is not a valid log filter"), "{stderr}");
}

/// What a service manager's notification socket received, one message per datagram.
fn received(socket: &UnixDatagram, until: &str, limit: Duration) -> Vec<String> {
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + limit;
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !messages.iter().any(|m: &String| m.contains(until)) {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    messages
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let dir = scratch("notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")];
    let mut server = Server::start_env(&["--plugin", &format!("{}@127.0.0.1:0", plugin("echo").display())], 1, &env);
    let got = received(&socket, "WATCHDOG=1", Duration::from_secs(10));
    let ready = got.iter().position(|m| m.contains("READY=1")).unwrap_or_else(|| panic!("no READY=1: {got:?}"));
    assert!(got[ready].contains("STATUS=serving 1 plugins"), "{got:?}");
    assert!(got.iter().skip(ready).any(|m| m.contains("WATCHDOG=1")), "no WATCHDOG=1 after READY: {got:?}");

    server.signal(libc::SIGHUP);
    let got = received(&socket, "READY=1", Duration::from_secs(10));
    assert!(got.iter().any(|m| m.contains("RELOADING=1") && m.contains("MONOTONIC_USEC=")), "{got:?}");

    server.signal(libc::SIGTERM);
    let got = received(&socket, "STOPPING=1", Duration::from_secs(10));
    assert!(got.iter().any(|m| m.contains("STOPPING=1")), "{got:?}");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn the_systemd_unit_verifies() {
    // `systemd-analyze verify` checks the unit's syntax and that ExecStart exists: point it
    // at the binary under test (the shipped unit names /usr/local/bin/switchboard).
    let unit = std::fs::read_to_string(repo_file("contrib/systemd/switchboard.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/switchboard serve"), "{unit}");
    let here = unit.replace("/usr/local/bin/switchboard", binary().to_str().unwrap());
    let dir = scratch("unit");
    let path = dir.join("switchboard.service");
    std::fs::write(&path, here).unwrap();
    // The socket unit beside it (it names the service, which must be there).
    let socket = dir.join("switchboard-echo.socket");
    std::fs::copy(repo_file("contrib/systemd/switchboard-echo.socket"), &socket).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", path.to_str().unwrap(), socket.to_str().unwrap()])
        .output()
        .expect("systemd-analyze (Debian's systemd package, installed by .ci/run)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> =
        stderr.lines().filter(|l| l.contains("switchboard.service") || l.contains("switchboard-echo.socket")).collect();
    assert!(out.status.success() && complaints.is_empty(), "{stderr}");
}

#[test]
fn the_config_files_serve_table_sets_the_admin_address() {
    let dir = scratch("serve-table");
    std::fs::copy(plugin("echo"), dir.join("echo.wasm")).unwrap();
    let config = dir.join("switchboard.toml");
    std::fs::write(&config, "[serve]\nadmin = \"127.0.0.1:0\"\n\n[echo]\npath = \"echo.wasm\"\nlisten = [\"127.0.0.1:0\"]\n").unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()], 2);
    assert!(server.urls.iter().any(|(name, url)| name == "admin" && url.starts_with("http://127.0.0.1:")), "{:?}", server.urls);
    seed_echo_client(server.addr(0), &[b"configured"]);
    // A typo in [serve] is an error at start, with its place in the file.
    std::fs::write(&config, "[serve]\nadmn = \"127.0.0.1:0\"\n").unwrap();
    let (code, _, stderr) = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("line 2, column 1") && stderr.contains("unknown field `admn`"), "{stderr}");
}

#[test]
fn a_drain_says_goodbye_and_ends_when_every_connection_has() {
    let chat = format!("{}@127.0.0.1:0", plugin("chat").display());
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    // A drain timeout far longer than the test may take: the drain must not wait for it.
    let mut server = Server::start(&["--plugin", &chat, "--plugin", &echo, "--drain-timeout", "60s"], 2);
    let mut alice = LineClient::connect(server.addr(0));
    alice.line();
    let mut bob = LineClient::connect(server.addr(0));
    bob.line();
    assert!(alice.line().starts_with("Client joined"));
    let mut idle_echo = connect(server.addr(1));
    assert!(echo_once(&mut idle_echo, b"still here"));

    let asked = Instant::now();
    server.signal(libc::SIGTERM);
    for client in [&mut alice, &mut bob] {
        let heard = client.lines_until_closed();
        assert!(heard.iter().any(|l| l.contains("* the server is shutting down; goodbye")), "no goodbye: {heard:?}");
    }
    let mut rest = Vec::new();
    use std::io::Read;
    assert_eq!(idle_echo.read_to_end(&mut rest).unwrap(), 0, "the idle echo connection was not ended: {rest:?}");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0), "{}", server.stderr());
    let took = asked.elapsed();
    eprintln!("drain with 3 open connections took {took:.2?}");
    assert!(took < Duration::from_secs(10), "the drain waited {took:?}");
    let log = server.stderr();
    assert!(!log.contains("drain timeout"), "{log}");
    assert!(!log.contains("plugin returned an error") && !log.contains("trapped"), "{log}");
}
