//! The admin endpoint (`serve --admin`): its `listening admin` line, `/metrics` moving as
//! connections come and go, `/readyz` following the plugins, and the loopback rule.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// The admin address from the `listening admin http://ADDR` line.
fn admin_addr(server: &Server) -> SocketAddr {
    let (_, url) = server.urls.iter().find(|(name, _)| name == "admin").expect("a `listening admin` line");
    url.strip_prefix("http://").expect("an http:// URL").parse().expect("the admin address")
}

/// `METHOD PATH` over HTTP/1.1 with `Connection: close`: the status and the body.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connecting to the admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("reading the response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    (status, body.to_string())
}

/// The samples of an OpenMetrics text exposition: `name{labels}` → value. Checks the
/// shape as it goes: every sample's family has a `# TYPE` line before it, and the
/// exposition ends with `# EOF`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no `# EOF` terminator:\n{text}");
    let mut typed: Vec<String> = Vec::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(typed.iter().any(|t| name == t || name.strip_suffix("_total") == Some(t)), "sample {name} has no # TYPE line");
        out.insert(series.to_string(), value.parse().unwrap_or_else(|_| panic!("not a number: {line:?}")));
    }
    out
}

fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (status, body) = request(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    *samples(&body).get(series).unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

/// Waits until `series` reads `want` (connections are counted when they end).
fn until_metric(addr: SocketAddr, series: &str, want: f64) {
    let started = Instant::now();
    while metric(addr, series) != want {
        assert!(started.elapsed() < Duration::from_secs(10), "{series} never read {want}: {}", metric(addr, series));
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_echo_connections_as_they_come_and_go() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    assert_eq!(metric(admin, r#"switchboard_downstream_cx_total{plugin="echo"}"#), 0.0);
    const N: usize = 7;
    for i in 0..N {
        seed_echo_client(server.addr(0), &[format!("hello {i}").as_bytes()]);
    }
    until_metric(admin, r#"switchboard_downstream_cx_total{plugin="echo"}"#, N as f64);
    until_metric(admin, r#"switchboard_downstream_cx_active{plugin="echo"}"#, 0.0);
    let mut open = connect(server.addr(0));
    open.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut open, 7), b"Echo=>x");
    assert_eq!(metric(admin, r#"switchboard_downstream_cx_active{plugin="echo"}"#), 1.0);
    drop(open);
    until_metric(admin, r#"switchboard_downstream_cx_active{plugin="echo"}"#, 0.0);
    assert_eq!(metric(admin, r#"switchboard_downstream_cx_total{plugin="echo"}"#), (N + 1) as f64);
    assert_eq!(metric(admin, r#"switchboard_plugin_traps_total{plugin="echo"}"#), 0.0);
    assert_eq!(metric(admin, r#"switchboard_plugin_info{plugin="echo",version="0.1.0"}"#), 1.0);
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
    until_metric(admin, r#"switchboard_downstream_cx_total{plugin="svc"}"#, 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_non_loopback_admin_address_is_refused_with_the_reason() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let (code, _, stderr) = run(&["serve", "--plugin", &echo, "--admin", "0.0.0.0:0"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--admin 0.0.0.0:0: only a loopback address"), "{stderr}");
}
