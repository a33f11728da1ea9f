//! The admin endpoint (`serve --admin`): its `listening admin` line, `/readyz` following
//! the plugins, the loopback rule. What `/metrics` says is tested in [`crate::metrics`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// The admin address from the `listening admin http://ADDR` line.
pub(crate) fn admin_addr(server: &Server) -> SocketAddr {
    let (_, url) = server.urls.iter().find(|(name, _)| name == "admin").expect("a `listening admin` line");
    url.strip_prefix("http://").expect("an http:// URL").parse().expect("the admin address")
}

/// `METHOD PATH` over HTTP/1.1 with `Connection: close`: the status and the body.
pub(crate) fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connecting to the admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("reading the response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    (status, body.to_string())
}

#[test]
fn the_endpoints_answer_and_refuse_what_they_do_not_serve() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    let (status, body) = request(admin, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(request(admin, "GET", "/healthz"), (200, "ok\n".into()));
    let (status, body) = request(admin, "POST", "/metrics");
    assert_eq!(status, 405, "{body}");
    let (status, body) = request(admin, "GET", "/nope");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("/metrics"), "{body}");
}

#[test]
fn readyz_is_503_until_the_folder_has_a_served_plugin() {
    let dir: PathBuf = std::env::temp_dir().join(format!("switchboard-admin-ready-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start(&["--plugins", dir.to_str().unwrap(), "--admin", "127.0.0.1:0"], 1);
    let admin = admin_addr(&server);
    assert_eq!(request(admin, "GET", "/healthz").0, 200);
    let (status, body) = request(admin, "GET", "/readyz");
    assert_eq!((status, body.as_str()), (503, "not ready: no plugins are configured\n"));
    std::fs::write(dir.join("svc.toml"), "listen = [\"127.0.0.1:0\"]\n").unwrap();
    std::fs::copy(plugin("echo"), dir.join(".svc.wasm.tmp")).unwrap();
    std::fs::rename(dir.join(".svc.wasm.tmp"), dir.join("svc.wasm")).unwrap();
    let (name, addr) = server.next_listening(Duration::from_secs(30));
    assert_eq!(name, "svc");
    let started = Instant::now();
    while request(admin, "GET", "/readyz") != (200, "ready\n".into()) {
        assert!(started.elapsed() < Duration::from_secs(10), "/readyz never turned ready: {:?}", request(admin, "GET", "/readyz"));
        thread::sleep(Duration::from_millis(20));
    }
    seed_echo_client(addr, &[b"spam"]);
    crate::metrics::until_value(admin, "switchboard_downstream_cx_total", &[("plugin", "svc")], 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_non_loopback_admin_address_is_refused_with_the_reason() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let (code, _, stderr) = run(&["serve", "--plugin", &echo, "--admin", "0.0.0.0:0"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--admin 0.0.0.0:0: only a loopback address"), "{stderr}");
}
