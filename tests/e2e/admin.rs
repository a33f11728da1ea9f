//! The admin endpoint (`serve --admin`): its `listening admin` line, `/readyz` following
//! the plugins, the JSON API (list and close connections, pause/resume, reload/rollback,
//! drain), the token, `switchboard status`, and the getfile form over plain HTTP (the
//! browser tests are in `browser.rs`). What `/metrics` says is tested in `metrics.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// The admin address from the `listening admin http://ADDR` line.
pub fn admin_addr(server: &Server) -> SocketAddr {
    let (_, url) = server.urls.iter().find(|(name, _)| name == "admin").expect("a `listening admin` line");
    url.strip_prefix("http://").expect("an http:// URL").parse().expect("the admin address")
}

/// `METHOD PATH` over HTTP/1.1 with `Connection: close`: the status and the body.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    request_with(addr, method, path, &[], b"")
}

/// `METHOD PATH` with extra header lines and a body: the status and the body.
pub fn request_with(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> (u16, String) {
    let (status, _, body) = exchange(addr, method, path, headers, body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `METHOD PATH`: the status, the head and the raw body.
fn exchange(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connecting to the admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("host:")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading the response");
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..at]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    let mut body = raw[at + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

/// The payload of a chunked body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// A JSON answer: the status and the parsed body.
pub fn api(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> (u16, serde_json::Value) {
    let (status, body) = request_with(addr, method, path, headers, b"");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body:?}"));
    (status, json)
}

/// The open connections the API lists.
fn open_connections(addr: SocketAddr) -> Vec<serde_json::Value> {
    let (status, json) = api(addr, "GET", "/api/connections", &[]);
    assert_eq!(status, 200, "{json}");
    json["connections"].as_array().expect("a connections array").clone()
}

/// The API's entry for plugin `name`.
fn plugin_state(addr: SocketAddr, name: &str) -> serde_json::Value {
    let (status, json) = api(addr, "GET", "/api/plugins", &[]);
    assert_eq!(status, 200, "{json}");
    json["plugins"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name} in {json}")).clone()
}

/// Waits until `check` holds, failing with `what` after 10 s.
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what} never happened");
        thread::sleep(Duration::from_millis(20));
    }
}

/// `switchboard status --admin ADDR ARGS...`: (exit code, stdout, stderr).
fn status(addr: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let admin = addr.to_string();
    let mut all = vec!["status", "--admin", &admin];
    all.extend_from_slice(args);
    run(&all)
}

/// Whether the server closes `s` (EOF or reset) within 10 s, sending nothing more.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("expected the close, got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Err(e) => panic!("the connection was not closed within 10 s: {e}"),
    }
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
fn a_non_loopback_admin_address_needs_a_token() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let (code, _, stderr) = run(&["serve", "--plugin", &echo, "--admin", "0.0.0.0:0"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--admin 0.0.0.0:0: a non-loopback address needs --admin-token-file FILE"), "{stderr}");
    let dir = temp_dir("empty-token");
    let empty = dir.join("token");
    std::fs::write(&empty, "  \n").unwrap();
    let (code, _, stderr) = run(&["serve", "--plugin", &echo, "--admin", "0.0.0.0:0", "--admin-token-file", empty.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("the file is empty"), "{stderr}");
    // With a token it starts.
    std::fs::write(&empty, "s3cret\n").unwrap();
    let server = Server::start(&["--plugin", &echo, "--admin", "0.0.0.0:0", "--admin-token-file", empty.to_str().unwrap()], 2);
    let port = admin_addr(&server).port();
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(request(local, "GET", "/healthz").0, 200);
}

/// A fresh directory under the system's temporary directory.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-admin-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_api_lists_an_open_connection_and_closing_it_by_id_ends_it() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    assert!(open_connections(admin).is_empty());
    let mut open = connect(server.addr(0));
    open.write_all(b"hello").unwrap();
    assert_eq!(read_n(&mut open, 11), b"Echo=>hello");
    let peer = open.local_addr().unwrap().to_string();
    // The host counts a write once the kernel took it: the client may read it first.
    until("the echo's bytes counted", || open_connections(admin).first().is_some_and(|c| c["bytes_out"] == 11));
    let listed = open_connections(admin);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let c = &listed[0];
    assert_eq!(
        (c["plugin"].as_str(), c["peer"].as_str(), c["transport"].as_str()),
        (Some("echo"), Some(peer.as_str()), Some("tcp")),
        "{c}"
    );
    assert_eq!((c["version"].as_str(), c["lane"].as_str()), (Some("0.1.0"), Some("light")), "{c}");
    assert_eq!((c["bytes_in"].as_u64(), c["bytes_out"].as_u64()), (Some(5), Some(11)), "{c}");
    assert!(c["age_seconds"].as_f64().unwrap() >= 0.0 && c["cpu_seconds"].as_f64().is_some(), "{c}");
    let id = c["id"].as_u64().unwrap();

    // `status` shows it (w) beside the plugin (ps).
    let (code, out, err) = status(admin, &[]);
    assert_eq!(code, 0, "{err}");
    // The address as the `listening admin` line prints it works too.
    let (code, same, err) = run(&["status", "--admin", &format!("http://{admin}/"), "w"]);
    assert_eq!(code, 0, "{err}");
    assert!(same.contains(&peer), "{same}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("PLUGIN  VERSION  HASH"), "{out}");
    assert!(lines[1].starts_with("echo    0.1.0    "), "{out}");
    let row = lines.iter().find(|l| l.contains(&peer)).unwrap_or_else(|| panic!("no row for {peer}:\n{out}"));
    assert_eq!(row.split_whitespace().next(), Some(id.to_string().as_str()), "{out}");

    // Closing it by id ends it: the client sees the close, the table forgets it.
    let (code, out, err) = status(admin, &["close", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("closing connection {id} (echo from {peer})")), "{out}");
    assert!(closed_by_server(&mut open));
    until("the closed connection leaving the table", || open_connections(admin).is_empty());
    // The rest serve on.
    seed_echo_client(server.addr(0), &[b"still here"]);
    let (code, _, err) = status(admin, &["close", &id.to_string()]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("404: no open connection has id {id}")), "{err}");
}

#[test]
fn pause_refuses_new_connections_and_keeps_the_open_ones() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0"], 2);
    let (admin, addr) = (admin_addr(&server), server.addr(0));
    let mut open = connect(addr);
    open.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut open, 7), b"Echo=>a");

    let (code, out, err) = status(admin, &["pause", "echo"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("tcp://{addr}: paused")), "{out}");
    assert_eq!(plugin_state(admin, "echo")["listeners"][0]["paused"], true);
    let mut refused = connect(addr);
    let _ = refused.write_all(b"b");
    assert!(closed_by_server(&mut refused));
    // The open one goes on.
    open.write_all(b"c").unwrap();
    assert_eq!(read_n(&mut open, 7), b"Echo=>c");

    // By the listener's URL (as its `listening` line shows it), resumed.
    let (status_code, json) = api(admin, "POST", &format!("/api/listeners/tcp:%2F%2F{addr}/resume"), &[]);
    assert_eq!(status_code, 200, "{json}");
    assert_eq!(json["listeners"][0], format!("tcp://{addr}"));
    seed_echo_client(addr, &[b"back"]);
    open.write_all(b"d").unwrap();
    assert_eq!(read_n(&mut open, 7), b"Echo=>d");
    let (status_code, json) = api(admin, "POST", "/api/listeners/nosuch/pause", &[]);
    assert_eq!(status_code, 404, "{json}");
    assert!(json["error"].as_str().unwrap().contains("no plugin or listener named \"nosuch\""), "{json}");
    assert!(plugin_state(admin, "echo")["counters"]["refused"].as_u64().unwrap() >= 1);
}

#[test]
fn reload_and_rollback_switch_between_versions() {
    let dir = temp_dir("rollback");
    let place = |src: &std::path::Path| {
        std::fs::copy(src, dir.join(".svc.wasm.tmp")).unwrap();
        std::fs::rename(dir.join(".svc.wasm.tmp"), dir.join("svc.wasm")).unwrap();
    };
    std::fs::write(dir.join("svc.toml"), "listen = [\"127.0.0.1:0\"]\n").unwrap();
    place(&plugin("echo"));
    let server = Server::start(&["--plugins", dir.to_str().unwrap(), "--admin", "127.0.0.1:0"], 2);
    let (admin, addr) = (admin_addr(&server), server.addr(0));
    let first = plugin_state(admin, "svc");
    assert_eq!(first["previous"], serde_json::Value::Null, "{first}");
    assert_eq!(first["world"], "full-plugin", "{first}");
    let (code, json) = api(admin, "POST", "/api/plugins/svc/rollback", &[]);
    assert_eq!(code, 409, "{json}");
    assert!(json["error"].as_str().unwrap().contains("no previous version"), "{json}");
    let (code, json) = api(admin, "POST", "/api/plugins/svc/reload", &[]);
    assert_eq!((code, json["change"].as_str()), (200, Some("unchanged")), "{json}");

    // A new file: chat replaces echo; the API keeps echo as the previous version.
    place(&plugin("chat"));
    server.wait_for_log("swapped: new connections get the new version");
    let mut chat = LineClient::connect(addr);
    assert!(chat.line().contains("chat server"), "not chat after the swap");
    let swapped = plugin_state(admin, "svc");
    assert_eq!(swapped["previous"]["hash"], first["hash"], "{swapped}");

    // Rollback: new connections get echo again; the open chat connection goes on.
    let (code, out, err) = status(admin, &["rollback", "svc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("svc: rolled back from 0.1.0 ("), "{out}");
    seed_echo_client(addr, &[b"echo again"]);
    let back = plugin_state(admin, "svc");
    assert_eq!((&back["hash"], &back["previous"]["hash"]), (&first["hash"], &swapped["hash"]), "{back}");

    // Reload: the file (chat) is applied again.
    let (code, json) = api(admin, "POST", "/api/plugins/svc/reload", &[]);
    assert_eq!((code, json["change"].as_str()), (200, Some("swapped")), "{json}");
    let mut chat2 = LineClient::connect(addr);
    assert!(chat2.line().contains("chat server"), "not chat after the reload");
    let (code, json) = api(admin, "POST", "/api/plugins/nosuch/reload", &[]);
    assert_eq!(code, 404, "{json}");
    drop((chat, chat2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_token_is_enforced_on_every_post_and_drain_ends_the_server() {
    let dir = temp_dir("token");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "guess\n").unwrap();
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let mut server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0", "--admin-token-file", token.to_str().unwrap()], 2);
    let admin = admin_addr(&server);
    // Reading needs no token.
    assert_eq!(api(admin, "GET", "/api/plugins", &[]).0, 200);
    for path in ["/api/drain", "/api/plugins/echo/reload", "/api/listeners/echo/pause", "/api/connections/1/close"] {
        let (code, json) = api(admin, "POST", path, &[]);
        assert_eq!(code, 401, "{path}: {json}");
        assert!(json["error"].as_str().unwrap().contains("Authorization: Bearer TOKEN"), "{json}");
        let (code, json) = api(admin, "POST", path, &["Authorization: Bearer guess"]);
        assert_eq!(code, 403, "{path}: {json}");
        assert!(json["error"].as_str().unwrap().contains("wrong token"), "{json}");
    }
    // A page on another site cannot post, token or not.
    let (code, json) =
        api(admin, "POST", "/api/listeners/echo/pause", &["Authorization: Bearer s3cret-token", "Origin: http://evil.example"]);
    assert_eq!(code, 403, "{json}");
    let (code, _, err) = status(admin, &["pause", "echo"]);
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = status(admin, &["--admin-token-file", wrong.to_str().unwrap(), "pause", "echo"]);
    assert_ne!(code, 0);
    assert!(err.contains("403: wrong token"), "{err}");
    assert_eq!(plugin_state(admin, "echo")["listeners"][0]["paused"], false);
    let (code, out, err) = status(admin, &["--admin-token-file", token.to_str().unwrap(), "pause", "echo"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("paused"), "{out}");

    // Drain (with the token): the server stops and exits by itself.
    let (code, out, err) = status(admin, &["--admin-token-file", token.to_str().unwrap(), "drain"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("draining"), "{out}");
    assert_eq!(server.wait_exit(Duration::from_secs(20)), Some(0), "{}", server.stderr());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_requests_get_a_4xx_json_error_that_says_what_is_wrong() {
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let server = Server::start(&["--plugin", &echo, "--admin", "127.0.0.1:0"], 2);
    let admin = admin_addr(&server);
    let cases: [(&str, &str, u16, &str); 7] = [
        ("GET", "/api/nope", 404, "no such API endpoint: /api/nope"),
        ("POST", "/api/plugins", 405, "use GET"),
        ("GET", "/api/drain", 405, "use POST"),
        ("POST", "/api/connections/abc/close", 400, "\"abc\" is not a connection id"),
        ("POST", "/api/connections/999999/close", 404, "no open connection has id 999999"),
        ("POST", "/api/plugins/nosuch/rollback", 404, "no plugin named \"nosuch\""),
        ("POST", "/api/listeners/%zz/pause", 400, "bad %-escape"),
    ];
    for (method, path, want, says) in cases {
        let (code, json) = api(admin, method, path, &[]);
        assert_eq!(code, want, "{method} {path}: {json}");
        assert!(json["error"].as_str().unwrap_or_default().contains(says), "{method} {path}: {json}");
    }
    // A request naming another host (DNS rebinding) is refused on a loopback endpoint.
    let (code, body) = request_with(admin, "GET", "/api/plugins", &["Host: evil.example"], b"");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("is not this loopback endpoint"), "{body}");
}

#[test]
fn the_getfile_form_downloads_over_http_and_says_why_when_it_cannot() {
    let root = temp_dir("getfile-root");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("data.bin"), &content).unwrap();
    let getfile = format!("{}@127.0.0.1:0", plugin("getfile").display());
    let grant = format!("getfile={}", root.display());
    let server = Server::start(&["--plugin", &getfile, "--dir", &grant, "--admin", "127.0.0.1:0"], 2);
    let (admin, port) = (admin_addr(&server), server.addr(0).port());
    let form = |file: &str, server_field: &str| format!("server={server_field}&port={port}&file={file}");
    let (code, head, body) =
        exchange(admin, "POST", "/getfile", &["Content-Type: application/x-www-form-urlencoded"], form("data.bin", "127.0.0.1").as_bytes());
    assert_eq!(code, 200, "{head}\n{}", String::from_utf8_lossy(&body));
    assert!(head.to_ascii_lowercase().contains("content-disposition: attachment; filename=\"data.bin\""), "{head}");
    assert!(body == content, "the download differs: {} bytes, want {}", body.len(), content.len());
    let (code, body) = request_with(admin, "POST", "/getfile", &[], form("missing.bin", "127.0.0.1").as_bytes());
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("gave no file &quot;missing.bin&quot;"), "{body}");
    let (code, body) = request_with(admin, "POST", "/getfile", &[], form("data.bin", "192.0.2.1").as_bytes());
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("dialing 192.0.2.1 is not allowed"), "{body}");
    let (code, body) = request_with(admin, "POST", "/getfile", &[], b"server=127.0.0.1&port=x&file=a");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Port &quot;x&quot; is not a port number"), "{body}");
    let (code, page) = request(admin, "GET", "/getfile");
    assert_eq!(code, 200);
    assert!(page.contains("name=\"server\"") && page.contains("name=\"port\"") && page.contains("name=\"file\""), "{page}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_getfile_form_stops_a_file_past_its_cap() {
    let root = temp_dir("getfile-cap");
    // 64 MiB of zeros (sparse on disk): far past a 1 MiB cap.
    std::fs::File::create(root.join("big.bin")).unwrap().set_len(64 << 20).unwrap();
    let getfile = format!("{}@127.0.0.1:0", plugin("getfile").display());
    let grant = format!("getfile={}", root.display());
    let server = Server::start(&["--plugin", &getfile, "--dir", &grant, "--admin", "127.0.0.1:0", "--admin-getfile-max", "1MiB"], 2);
    let (admin, port) = (admin_addr(&server), server.addr(0).port());
    let form = format!("server=127.0.0.1&port={port}&file=big.bin");
    let (code, body) = request_with(admin, "POST", "/getfile", &[], form.as_bytes());
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("than this form fetches (1048576 bytes;") && body.contains("--admin-getfile-max)"), "{body}");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("switchboard-getfile-{}-", server.pid())))
        .collect();
    assert!(leftovers.is_empty(), "the temporary directory is left behind: {leftovers:?}");
    let _ = std::fs::remove_dir_all(&root);
}
