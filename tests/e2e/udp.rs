//! UDP: the echo plugin's datagram handler against the seed's datagram client, the
//! reflection guards, the per-peer reply rate and the amplification cap.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// How long a test waits for an answer that must *not* come.
const SILENCE: Duration = Duration::from_millis(500);

fn echo_spec(listen: &str) -> String {
    format!("{}@{listen}", plugin("echo").display())
}

/// A client socket on `ip` (port 0: any), failing the test on timeouts instead of hanging.
fn client_on(ip: Ipv4Addr, port: u16) -> UdpSocket {
    let s = UdpSocket::bind((ip, port)).unwrap_or_else(|e| panic!("binding a UDP client socket to {ip}:{port}: {e}"));
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

fn client() -> UdpSocket {
    client_on(Ipv4Addr::LOCALHOST, 0)
}

/// Sends `payload` and returns the one datagram that comes back.
fn ask(s: &UdpSocket, server: SocketAddr, payload: &[u8]) -> Vec<u8> {
    s.send_to(payload, server).unwrap();
    let mut buf = vec![0u8; 70_000];
    let (n, from) = s.recv_from(&mut buf).unwrap_or_else(|e| panic!("no answer to a {}-byte datagram: {e}", payload.len()));
    assert_eq!(from, server, "the answer must come from the address the client sent to");
    buf.truncate(n);
    buf
}

/// Asserts nothing arrives on `s` within [`SILENCE`].
fn expect_silence(s: &UdpSocket, what: &str) {
    s.set_read_timeout(Some(SILENCE)).unwrap();
    let mut buf = [0u8; 100];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => panic!("{what}: got {:?} from {from}, expected no answer", String::from_utf8_lossy(&buf[..n])),
        Err(e) => assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{what}: {e}"),
    }
}

/// A loopback address of its own for this test process (127.0.0.0/8 is all loopback), so
/// two suites running at once do not fight over ports 7, 13, 17 and 19.
fn private_loopback(salt: u8) -> Ipv4Addr {
    let pid = std::process::id();
    Ipv4Addr::new(127, (pid >> 8) as u8, pid as u8, 10u8.wrapping_add(salt).max(2))
}

#[test]
fn seed_datagram_client_gets_prefix_plus_payload() {
    let server = Server::start(&["--plugin", &echo_spec("udp:127.0.0.1:0")], 1);
    assert!(server.urls[0].1.starts_with("udp://127.0.0.1:"), "{:?}", server.urls);
    let addr = server.addr(0);
    let s = client();
    assert_eq!(ask(&s, addr, b"Hello World\n"), b"Echo=>Hello World\n");
    let thousand: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(ask(&s, addr, &thousand), [b"Echo=>".as_slice(), &thousand].concat());
    let binary: Vec<u8> = (0..=255u8).chain([0, 0xff, 0x11, 0x13, 0]).collect();
    assert_eq!(ask(&s, addr, &binary), [b"Echo=>".as_slice(), &binary].concat());
    // 64 KiB minus what the prefix and the IP/UDP headers need: the largest that fits.
    let big: Vec<u8> = (0..65_507 - 6).map(|i: u32| (i * 7) as u8).collect();
    assert_eq!(ask(&s, addr, &big), [b"Echo=>".as_slice(), &big].concat());
    assert_eq!(ask(&s, addr, b""), b"Echo=>", "an empty datagram is a datagram too");

    // The seed's own client (Listing 12, ported to Python 3).
    let script = &repo_file("tests/clients/udp-echo-client.py");
    let out = Command::new("python3")
        .args([script, "127.0.0.1"])
        .env("PORT", addr.port().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("python3 is required (.ci/run checks for it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the seed client failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "b'Echo=>Hello World\\n'\n");
}

#[test]
fn one_echo_component_serves_tcp_and_udp_at_once() {
    let server = Server::start(&["--plugin", &echo_spec("127.0.0.1:0,udp:127.0.0.1:0"), "--set", "echo.PREFIX=both: "], 2);
    assert!(server.urls[0].1.starts_with("tcp://") && server.urls[1].1.starts_with("udp://"), "{:?}", server.urls);
    let (tcp, udp) = (server.addr(0), server.addr(1));
    let mut stream = connect(tcp);
    let s = client();
    for i in 0..20 {
        let msg = format!("message {i}");
        std::io::Write::write_all(&mut stream, msg.as_bytes()).unwrap();
        assert_eq!(read_n(&mut stream, 6 + msg.len()), format!("both: {msg}").as_bytes());
        assert_eq!(ask(&s, udp, msg.as_bytes()), format!("both: {msg}").as_bytes());
    }
}

#[test]
fn reflector_source_ports_get_no_answer() {
    let server = Server::start(&["--plugin", &echo_spec("udp:127.0.0.1:0")], 1);
    let addr = server.addr(0);
    // Binding ports below 1024 needs root (or CAP_NET_BIND_SERVICE): the suite runs as
    // root; anywhere else this fails loudly rather than passing untested.
    for (i, port) in [7u16, 13, 17, 19].into_iter().enumerate() {
        let ip = private_loopback(i as u8);
        let s = client_on(ip, port);
        s.send_to(b"Hello World\n", addr).unwrap();
        // A datagram from an ordinary port, sent after it, is answered: so the first one
        // has been seen (and dropped) by then.
        assert_eq!(ask(&client(), addr, b"control"), b"Echo=>control");
        expect_silence(&s, &format!("a datagram from source port {port}"));
    }
    server.wait_for_log("source port 0/7/13/17/19");
}

#[test]
fn a_datagram_from_the_listeners_own_address_gets_no_answer() {
    let server = Server::start(&["--plugin", &echo_spec("udp:127.0.0.1:0")], 1);
    let addr = server.addr(0);
    // The listener's own port on another loopback address: the same host, so a reply
    // could feed a loop (a spoofed 127.0.0.1:PORT itself cannot be sent from here: the
    // listener holds that address).
    let s = client_on(private_loopback(7), addr.port());
    s.send_to(b"Hello World\n", addr).unwrap();
    assert_eq!(ask(&client(), addr, b"control"), b"Echo=>control");
    expect_silence(&s, "a datagram from the listener's own port on loopback");
    server.wait_for_log("source is this host's own listener");
}

#[test]
fn a_thousand_datagrams_from_four_clients_are_all_answered() {
    // All four clients are 127.0.0.1, one peer as far as the rate cap goes: raise it.
    let server =
        Server::start(&["--plugin", &echo_spec("udp:127.0.0.1:0"), "--set", "echo.PREFIX=", "--udp-replies-per-peer", "100000/s"], 1);
    let addr = server.addr(0);
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            thread::spawn(move || {
                let s = client();
                for i in 0..250 {
                    let msg = format!("client {c} datagram {i}");
                    assert_eq!(ask(&s, addr, msg.as_bytes()), msg.as_bytes());
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client missed an answer");
    }
    eprintln!("1000 datagrams, 4 clients: {:?}", started.elapsed());
}

#[test]
fn replies_per_peer_are_capped() {
    let server = Server::start(&["--plugin", &echo_spec("udp:127.0.0.1:0"), "--udp-replies-per-peer", "20/s"], 1);
    let addr = server.addr(0);
    let s = client();
    let started = Instant::now();
    for i in 0..100 {
        s.send_to(format!("burst {i}").as_bytes(), addr).unwrap();
    }
    // Collect until the answers stop for a while.
    s.set_read_timeout(Some(SILENCE)).unwrap();
    let mut answered = 0;
    let mut buf = [0u8; 100];
    while s.recv_from(&mut buf).is_ok() {
        answered += 1;
        assert!(answered <= 100);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A full bucket (20) at once, then 20 per second for as long as the burst took.
    let most = 20 + (20.0 * elapsed).ceil() as usize + 1;
    assert!((20..=most).contains(&answered), "{answered} of 100 answered in {elapsed:.2} s; expected 20..={most}");
    server.wait_for_log("peer over its reply rate");
    // Another peer is not affected.
    assert_eq!(ask(&client_on(private_loopback(3), 0), addr, b"other"), b"Echo=>other");
}

#[test]
fn replies_larger_than_the_amplification_cap_are_not_sent() {
    // A 2,000-byte prefix: a 1-byte datagram would be answered with 2,001 bytes.
    let prefix = "A".repeat(2000);
    let set = format!("echo.PREFIX={prefix}");
    let server = Server::start(&["--plugin", &echo_spec("udp:127.0.0.1:0"), "--set", &set], 1);
    let addr = server.addr(0);
    let s = client();
    s.send_to(b"x", addr).unwrap();
    expect_silence(&s, "a 2,001-byte answer to 1 byte (default cap: 3x, at least 1,200 bytes)");
    server.wait_for_log("replies larger than the amplification cap allows");
    // 1,000 bytes in, 3,000 out: exactly the cap.
    let big = vec![b'b'; 1000];
    assert_eq!(ask(&s, addr, &big), [prefix.as_bytes(), &big].concat());
    drop(server);

    let server = Server::start(&["--plugin", &echo_spec("udp:127.0.0.1:0"), "--set", &set, "--udp-amplification", "off"], 1);
    let s = client();
    assert_eq!(ask(&s, server.addr(0), b"x"), [prefix.as_bytes(), b"x"].concat(), "off: no cap");
}

#[test]
fn a_stream_only_plugin_is_refused_for_udp() {
    let spec = format!("{}@udp:127.0.0.1:0", fixture("misbehave").display());
    let (code, stdout, stderr) = run(&["serve", "--plugin", &spec]);
    assert_ne!(code, 0);
    assert!(stdout.is_empty(), "nothing may be served: {stdout}");
    assert!(
        stderr.contains("plugin misbehave on udp:127.0.0.1:0")
            && stderr.contains("stream-plugin and exports no datagram handler")
            && stderr.contains("cannot serve UDP"),
        "unclear refusal: {stderr}"
    );
}
