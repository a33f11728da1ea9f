//! The PROXY protocol in front of chat: a hand-written v1 header, a real HAProxy (Debian's
//! package, started by the test on free ports) sending v2, and the refusals (a source
//! not in --proxy-from, no header, garbage).

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::ReservedPort;
use crate::support::*;

fn chat_behind_proxy(proxy_from: &str) -> Server {
    let chat = format!("{}@127.0.0.1:0", plugin("chat").display());
    Server::start(&["--plugin", &chat, "--proxy-protocol", "chat", "--proxy-from", proxy_from, "--admin", "127.0.0.1:0"], 2)
}

/// Connects and sends `header`; the chat welcome line must follow.
fn join(addr: SocketAddr, header: &[u8]) -> LineClient {
    let mut s = connect(addr);
    s.write_all(header).unwrap();
    let mut client = LineClient::from_stream(s);
    assert_eq!(client.line(), "You're connected to the switchboard chat server");
    client
}

fn refused_count(server: &Server, reason: &str) -> u64 {
    let admin = server.urls.iter().find(|(n, _)| n == "admin").map(|(_, u)| u.trim_start_matches("http://").to_string()).unwrap();
    let mut s = std::net::TcpStream::connect(&admin).unwrap();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with("switchboard_denied_connections_total{") && l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_v1_header_from_an_allowed_source_names_the_client_chat_announces() {
    let server = chat_behind_proxy("127.0.0.0/8");
    let addr = server.addr(0);
    let mut alice = join(addr, b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 2626\r\n");
    // The header and the first line in one segment: the line is the client's, not lost.
    let mut bob = join(addr, b"PROXY TCP6 2001:db8::7 ::1 40002 2626\r\nhello from bob\r\n");
    assert_eq!(alice.line(), "Client joined [2001:db8::7]:40002");
    // (An IPv6 address is bracketed once, as chat shows every IPv6 client.)
    assert_eq!(alice.line(), "[2001:db8::7]:40002 hello from bob");
    bob.send("hi\r\n");
    assert_eq!(alice.line(), "[2001:db8::7]:40002 hi");
    drop(bob);
    assert_eq!(alice.line(), "Client left [2001:db8::7]:40002");
    // The access log names the real client too.
    drop(alice);
    server.wait_for_log("peer=203.0.113.9:40001}: switchboard::access: closed");
}

#[test]
fn without_a_valid_header_or_from_elsewhere_the_connection_is_refused_and_counted() {
    let server = chat_behind_proxy("127.0.0.0/8");
    let addr = server.addr(0);
    let mut garbage = connect(addr);
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    LineClient::from_stream(garbage).expect_closed();
    let before = Instant::now();
    let silent = connect(addr);
    LineClient::from_stream(silent).expect_closed();
    assert!(before.elapsed() >= Duration::from_secs(4), "a silent client waited {:?} (the header timeout is 5 s)", before.elapsed());
    assert_eq!(refused_count(&server, "proxy_header"), 2);

    // 127.0.0.1 is not a load balancer here.
    let strict = chat_behind_proxy("10.0.0.0/8");
    let mut s = connect(strict.addr(0));
    let _ = s.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 2626\r\n");
    LineClient::from_stream(s).expect_closed();
    assert_eq!(refused_count(&strict, "proxy_untrusted"), 1);

    let (code, _, stderr) = run(&["serve", "--plugin", &format!("{}@127.0.0.1:0", plugin("chat").display()), "--proxy-protocol", "chat"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("plugin chat: proxy-protocol needs --proxy-from CIDR"), "{stderr}");
    let (code, _, stderr) = run(&[
        "serve",
        "--plugin",
        &format!("{}@127.0.0.1:0", plugin("chat").display()),
        "--proxy-protocol",
        "caht",
        "--proxy-from",
        "127.0.0.1/32",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--proxy-protocol: there is no plugin named \"caht\""), "{stderr}");
}

/// HAProxy in TCP mode on a free port, sending PROXY v2 to `backend`.
pub struct Haproxy {
    child: Child,
    /// Its port, held for it (see [`ReservedPort`]).
    _port: ReservedPort,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The client address of the connection that found HAProxy listening (chat saw it
    /// join and leave).
    pub probe: SocketAddr,
}

impl Haproxy {
    /// Starts it, and returns once it accepts connections.
    pub fn start(backend: SocketAddr) -> Haproxy {
        assert!(
            Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success()),
            "haproxy is required (Debian's haproxy package; .ci/run installs it)"
        );
        let reserved = ReservedPort::new();
        let port = reserved.port;
        let dir = std::env::temp_dir().join(format!("switchboard-e2e-haproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
                 frontend chat\n    bind 127.0.0.1:{port}\n    default_backend switchboard\n\
                 backend switchboard\n    server sb {backend} send-proxy-v2\n"
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting haproxy");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + PATIENCE;
        let probe = loop {
            if let Ok(s) = std::net::TcpStream::connect(addr) {
                break s.local_addr().unwrap();
            }
            assert!(Instant::now() < deadline, "haproxy did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        };
        Haproxy { child, _port: reserved, addr, probe }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn behind_haproxy_with_proxy_v2_chat_announces_the_real_client() {
    let server = chat_behind_proxy("127.0.0.1/32");
    let haproxy = Haproxy::start(server.addr(0));
    // The probe went through HAProxy as a chat client of its own: wait until it is gone.
    server.wait_for_log(&format!("peer={}}}: switchboard::access: closed", haproxy.probe));
    // HAProxy's own connection to the backend comes from 127.0.0.1 at some port; the
    // client's address is the one the chat shows. Bind the client to 127.0.0.2 so the two
    // differ.
    let mut alice = LineClient::connect(haproxy.addr);
    assert_eq!(alice.line(), "You're connected to the switchboard chat server");
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    socket.connect(&haproxy.addr.into()).unwrap();
    let bob_stream: std::net::TcpStream = socket.into();
    let bob_addr = bob_stream.local_addr().unwrap();
    bob_stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut bob = LineClient::from_stream(bob_stream);
    assert_eq!(bob.line(), "You're connected to the switchboard chat server");
    assert_eq!(alice.line(), format!("Client joined {bob_addr}"));
    bob.send("through haproxy\r\n");
    assert_eq!(alice.line(), format!("[{bob_addr}] through haproxy"));
}
