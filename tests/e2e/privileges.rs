//! `serve --user NAME`: bind as root, then run as NAME (CI runs as root; the test says so
//! and fails when it is not).

use std::net::TcpListener;

use crate::support::*;

/// The ids of every thread of `pid`, from `/proc/PID/task/*/status`: (`Uid:` line, `Gid:` line).
fn thread_ids(pid: u32) -> Vec<(String, String)> {
    let mut ids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status.lines().find(|l| l.starts_with(name)).unwrap_or_default().split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
        };
        ids.push((field("Uid:"), field("Gid:")));
    }
    ids
}

#[test]
fn user_drops_root_after_binding_a_port_below_1024() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test binds a port below 1024 and switches user: it needs root (CI runs as root)");
    let port = (900..1000).find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok()).expect("a free port in 900-999");
    let echo = format!("{}@127.0.0.1:{port}", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--user", "nobody"], 1);
    server.wait_for_log("dropped privileges: running as nobody");
    let ids = thread_ids(server.pid());
    assert!(ids.len() > 2, "{ids:?}");
    for (uid, gid) in &ids {
        assert_eq!(uid, "65534 65534 65534 65534", "every thread, real/effective/saved/fs uid: {ids:?}");
        assert_eq!(gid, "65534 65534 65534 65534", "{ids:?}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    assert!(
        status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Groups:", "65534"]),
        "supplementary groups dropped:\n{status}"
    );
    seed_echo_client(server.addr(0), &[b"spam", b"Spam"]);

    let (code, _, stderr) = run(&["serve", "--plugin", &echo, "--user", "no-such-user-here"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--user no-such-user-here: there is no such user"), "{stderr}");
}
