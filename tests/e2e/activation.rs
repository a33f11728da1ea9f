//! How listeners are exposed: socket activation (`systemd:NAME` listeners, served from
//! sockets systemd passes), `--ipv6-only` against dual-stack, and
//! `--reuse-port` (two `serve` processes on one port), with Debian's
//! `systemd-socket-activate` standing in for systemd (.ci/run installs the systemd package).

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::ports::ReservedPort;
use crate::support::*;

/// A UDP port that was free a moment ago (systemd-socket-activate needs a number). A
/// stranger taking it in the window makes systemd-socket-activate's bind fail loudly.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `systemd-socket-activate ARGS... switchboard serve SERVE...`.
fn activate(args: &[&str], serve: &[&str]) -> Command {
    let tool = "systemd-socket-activate";
    assert!(
        Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success()),
        "{tool} is required (Debian's systemd package; .ci/run installs it)"
    );
    let mut command = Command::new(tool);
    command.args(args).arg(binary()).arg("serve").args(serve);
    command
}

/// Connects, retrying while the socket is not bound yet.
fn connect_soon(addr: SocketAddr) -> std::net::TcpStream {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                return s;
            }
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("connecting to {addr}: {e}"),
        }
    }
}

#[test]
fn a_tcp_socket_passed_by_systemd_is_served_by_name() {
    let port = ReservedPort::new();
    let (addr, listen) = (port.addr(), port.addr().to_string());
    let echo = format!("{}@systemd:echo", plugin("echo").display());
    // systemd-socket-activate binds the port, waits for the first connection, then
    // execs switchboard with the socket as fd 3 (LISTEN_FDS=1, LISTEN_FDNAMES=echo).
    let client = thread::spawn(move || seed_echo_client_on(connect_soon(addr), &[b"spam", b"Spam", b"SPAM"]));
    let server = Server::start_command(activate(&["-l", &listen, "--fdname=echo"], &["--plugin", &echo]), 1);
    assert_eq!(server.listeners[0], ("echo".to_string(), addr), "the passed socket's own address");
    client.join().expect("the first client, which woke the service, got its echoes");
    seed_echo_client(addr, &[b"second"]);
}

#[test]
fn a_udp_socket_passed_by_systemd_is_served_by_name() {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let echo = format!("{}@systemd:dgram", plugin("echo").display());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let command = activate(&["-d", "-l", &listen, "--fdname=dgram"], &["--plugin", &echo]);
    let prober = {
        let socket = socket.try_clone().unwrap();
        let listen = listen.clone();
        // A datagram wakes the service too; resend until the answer comes.
        thread::spawn(move || {
            let deadline = Instant::now() + PATIENCE;
            let mut buf = [0u8; 64];
            while Instant::now() < deadline {
                let _ = socket.send_to(b"Hello World\n", &listen);
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    return buf[..n].to_vec();
                }
            }
            panic!("no answer from the activated UDP echo within {PATIENCE:?}");
        })
    };
    let server = Server::start_command(command, 1);
    assert_eq!(server.urls[0], ("echo".to_string(), format!("udp://{listen}")));
    assert_eq!(prober.join().unwrap(), b"Echo=>Hello World\n");
}

#[test]
fn a_name_systemd_did_not_pass_is_refused_with_the_names_it_did() {
    let port = ReservedPort::new();
    let (addr, listen) = (port.addr(), port.addr().to_string());
    let echo = format!("{}@systemd:other", plugin("echo").display());
    let mut command = activate(&["-l", &listen, "--fdname=echo"], &["--plugin", &echo]);
    let child = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    drop(connect_soon(addr));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains(r#"cannot listen on systemd:other: no socket named "other" was passed by systemd; the passed ones are "echo""#),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["serve", "--plugin", &echo]);
    assert_ne!(code, 0);
    assert!(stderr.contains("none was passed: LISTEN_FDS is unset"), "{stderr}");
}

#[test]
fn with_reuse_port_a_second_serve_shares_the_port_and_takes_over_when_the_first_drains() {
    let old = Server::start(&["--plugin", &format!("{}@127.0.0.1:0", plugin("echo").display()), "--reuse-port"], 1);
    let addr = old.addr(0);
    let new =
        Server::start(&["--plugin", &format!("{}@{addr}", plugin("echo").display()), "--reuse-port", "--set", "echo.PREFIX=Next=>"], 1);
    assert_eq!(new.addr(0), addr);
    // Both answer while both run (the kernel spreads connections over the two).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let mut s = connect(addr);
        std::io::Write::write_all(&mut s, b"x").unwrap();
        seen.insert(read_n(&mut s, 7));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "only {seen:?} answered in 200 connections");
    // The upgrade: SIGTERM the old one; every new connection reaches the new one.
    let mut old = old;
    old.signal(libc::SIGTERM);
    assert!(old.wait_exit(Duration::from_secs(15)).is_some(), "the old server did not exit");
    for _ in 0..50 {
        let mut s = connect(addr);
        std::io::Write::write_all(&mut s, b"x").unwrap();
        assert_eq!(read_n(&mut s, 7), b"Next=>x");
    }
    // Without the flag, the port is taken.
    let (code, _, stderr) = run(&["serve", "--plugin", &format!("{}@{addr}", plugin("echo").display())]);
    assert_ne!(code, 0);
    assert!(stderr.contains("Address already in use"), "{stderr}");
}

#[test]
fn an_ipv6_listener_is_dual_stack_unless_ipv6_only() {
    let echo = format!("{}@[::]:0", plugin("echo").display());
    let dual = Server::start(&["--plugin", &echo], 1);
    let port = dual.addr(0).port();
    seed_echo_client(SocketAddr::from(([127, 0, 0, 1], port)), &[b"over IPv4"]);
    seed_echo_client(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), &[b"over IPv6"]);
    drop(dual);

    let only = Server::start(&["--plugin", &echo, "--ipv6-only"], 1);
    let port = only.addr(0).port();
    seed_echo_client(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), &[b"over IPv6"]);
    let refused = std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(refused.is_err(), "an IPv4 client reached an --ipv6-only listener");
}
