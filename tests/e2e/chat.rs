//! The chat plugin against seed-style chat clients. Each check is a function of the
//! plugin file so every chat implementation runs the same transcript.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

const WELCOME: &str = "You're connected to the switchboard chat server";

fn serve_chat(plugin: &Path, extra: &[&str]) -> Server {
    let spec = format!("{}@127.0.0.1:0", plugin.display());
    let mut args = vec!["--plugin", spec.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args, 1)
}

/// Connects a client and reads its welcome line; every earlier client hears it join.
fn join(addr: SocketAddr, earlier: &mut [LineClient]) -> LineClient {
    let mut c = LineClient::connect(addr);
    assert_eq!(c.line(), WELCOME);
    for e in earlier.iter_mut() {
        assert_eq!(e.line(), format!("Client joined {}", c.addr));
    }
    c
}

/// The transcript the issue asks for, with five raw-socket clients.
pub fn five_client_transcript(plugin: &Path) {
    let server = serve_chat(plugin, &[]);
    let addr = server.addr(0);
    let mut clients: Vec<LineClient> = Vec::new();
    for _ in 0..5 {
        let c = join(addr, &mut clients);
        clients.push(c);
    }

    // A line from client 1 reaches every other client exactly once, not client 1.
    clients[0].send("Hello, is anyone there?\r\n");
    let from0 = format!("[{}] Hello, is anyone there?", clients[0].addr);
    for c in &mut clients[1..] {
        assert_eq!(c.line(), from0);
    }
    // A line sent in two pieces 200 ms apart arrives whole; the next line client 1 sees
    // is this one, so it never got its own back.
    clients[1].send("Yes, I'm ");
    thread::sleep(Duration::from_millis(200));
    clients[1].send("here.\n");
    let from1 = format!("[{}] Yes, I'm here.", clients[1].addr);
    for (i, c) in clients.iter_mut().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(c.line(), from1, "client {i}");
    }
    // Several lines in one packet, CRLF and LF, each relayed on its own.
    clients[2].send("one\ntwo\r\n");
    for c in [0, 1, 3, 4] {
        assert_eq!(clients[c].line(), format!("[{}] one", clients[2].addr));
        assert_eq!(clients[c].line(), format!("[{}] two", clients[2].addr));
    }

    // A clean close.
    let gone = clients.remove(4);
    let gone_addr = gone.addr.clone();
    drop(gone);
    for c in &mut clients {
        assert_eq!(c.line(), format!("Client left {gone_addr}"));
    }
    // A reset: closing with unread data makes the kernel send RST instead of FIN.
    clients[0].send("unread\n");
    for c in [1, 2] {
        assert_eq!(clients[c].line(), format!("[{}] unread", clients[0].addr));
    }
    thread::sleep(Duration::from_millis(100)); // let the line reach client 3's socket
    let reset = clients.remove(3);
    let reset_addr = reset.addr.clone();
    drop(reset);
    for c in &mut clients {
        assert_eq!(c.line(), format!("Client left {reset_addr}"));
    }
}

/// `/nick`, `/who`, `/quit`.
pub fn commands(plugin: &Path) {
    let server = serve_chat(plugin, &[]);
    let mut a = join(server.addr(0), &mut []);
    let mut b = join(server.addr(0), std::slice::from_mut(&mut a));
    b.send("/nick bob\n");
    assert_eq!(b.line(), "* you are now known as bob");
    assert_eq!(a.line(), format!("* {} is now known as bob", b.addr));
    b.send("hi\n");
    assert_eq!(a.line(), "[bob] hi");
    a.send("/who\n");
    assert_eq!(a.line(), format!("* 2 here: {}, bob", a.addr));
    a.send("/nick two words\n");
    assert!(a.line().starts_with("* /nick NAME:"));
    a.send("/dance\n");
    assert!(a.line().starts_with("* unknown command /dance"));
    b.send("/quit\n");
    assert_eq!(b.line(), "* bye");
    b.expect_closed();
    // The leave notice keeps the address, not the nickname.
    assert_eq!(a.line(), format!("Client left {}", b.addr));
}

/// A dual-stack (`[::]`) listener: an IPv4 client is shown by its IPv4 address, an IPv6
/// client's bracketed address is not bracketed again.
pub fn ipv4_and_ipv6_clients_show_their_own_addresses(plugin: &Path) {
    let spec = format!("{}@[::]:0", plugin.display());
    let server = Server::start(&["--plugin", &spec], 1);
    let port = server.addr(0).port();
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
    let mut a = join(v4, &mut []);
    assert!(a.addr.starts_with("127.0.0.1:"), "{}", a.addr);
    let mut b = join(v6, std::slice::from_mut(&mut a));
    assert!(b.addr.starts_with("[::1]:"), "{}", b.addr);
    b.send("hi from v6\n");
    assert_eq!(a.line(), format!("{} hi from v6", b.addr));
    a.send("hi from v4\n");
    assert_eq!(b.line(), format!("[{}] hi from v4", a.addr));
}

#[test]
fn rust_chat_shows_ipv4_and_ipv6_addresses() {
    ipv4_and_ipv6_clients_show_their_own_addresses(&plugin("chat"));
}

#[test]
fn rust_chat_five_client_transcript() {
    five_client_transcript(&plugin("chat"));
}

#[test]
fn rust_chat_commands() {
    commands(&plugin("chat"));
}

#[test]
fn long_lines_are_cut_and_flagged() {
    let server = serve_chat(&plugin("chat"), &["--set", "chat.MAX_LINE=10"]);
    let mut a = join(server.addr(0), &mut []);
    let mut b = join(server.addr(0), std::slice::from_mut(&mut a));
    b.send(&format!("{}\nshort\n", "x".repeat(100_000)));
    assert_eq!(a.line(), format!("[{}] xxxxxxxxxx [cut]", b.addr));
    assert_eq!(a.line(), format!("[{}] short", b.addr));
}

#[test]
fn two_hundred_clients_each_line_reaches_all_others() {
    const N: usize = 200;
    let server = serve_chat(&plugin("chat"), &[]);
    let addr = server.addr(0);
    let mut clients = Vec::new();
    for _ in 0..N {
        let mut c = LineClient::connect(addr);
        assert_eq!(c.line(), WELCOME);
        clients.push(c);
    }
    // Every client hears each later one join before anyone speaks.
    for (i, c) in clients.iter_mut().enumerate() {
        for _ in i + 1..N {
            assert!(c.line().starts_with("Client joined "));
        }
    }
    let started = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::spawn(move || {
                c.send(&format!("hello from {i}\n"));
                let mut seen = [false; N];
                for _ in 0..N - 1 {
                    let line = c.line();
                    let from: usize = line.rsplit(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{line:?}"));
                    assert!(from != i && !seen[from], "client {i}: duplicate or own line {line:?}");
                    seen[from] = true;
                }
                c
            })
        })
        .collect();
    let clients: Vec<LineClient> = handles.into_iter().map(|h| h.join().expect("a client missed a line")).collect();
    eprintln!("200 clients: {} lines relayed in {:?}", N * (N - 1), started.elapsed());
    drop(clients);
}

#[test]
fn a_client_that_never_reads_does_not_slow_the_others_or_grow_memory() {
    const TALKERS: usize = 50;
    const LINES: usize = 50;
    let server = serve_chat(&plugin("chat"), &[]);
    let addr = server.addr(0);
    let mut silent = LineClient::connect(addr);
    assert_eq!(silent.line(), WELCOME);
    let mut talkers = Vec::new();
    for _ in 0..TALKERS {
        let mut c = LineClient::connect(addr);
        assert_eq!(c.line(), WELCOME);
        talkers.push(c);
    }
    let rss_before = server.rss_kib();
    let payload = "y".repeat(500);
    let handles: Vec<_> = talkers
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let payload = payload.clone();
            thread::spawn(move || {
                let mut reader = c.stream.try_clone().unwrap();
                let expected = (TALKERS - 1) * LINES;
                let counter = thread::spawn(move || {
                    let mut c2 = LineClient::from_stream(reader_clone(&mut reader));
                    let mut got = 0;
                    while got < expected {
                        let line = c2.line();
                        if line.starts_with('[') {
                            got += 1;
                        }
                    }
                });
                for n in 0..LINES {
                    c.send(&format!("{i}-{n} {payload}\n"));
                    thread::sleep(Duration::from_millis(50));
                }
                counter.join().expect("a talker stopped receiving");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a talker failed");
    }
    let rss_after = server.rss_kib();
    eprintln!("slow reader: RSS {rss_before} KiB → {rss_after} KiB");
    // What the silent client did not read sits in the kernel's socket buffers and at most
    // 1 MiB of hub queue; the host's own memory must not follow it.
    assert!(rss_after < rss_before + 48 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
    drop(silent);
}

#[test]
fn a_member_that_falls_too_far_behind_is_disconnected() {
    let server = serve_chat(&plugin("chat"), &[]);
    let addr = server.addr(0);
    let mut silent = LineClient::connect(addr);
    assert_eq!(silent.line(), WELCOME);
    let mut blaster = join(addr, std::slice::from_mut(&mut silent));
    // 16 MB for the silent client: more than the kernel's buffers (~4 MB on loopback) plus
    // the hub's 1 MiB queue can hold.
    let line = format!("{}\n", "z".repeat(4000));
    for _ in 0..4000 {
        blaster.send(&line);
    }
    server.wait_for_log("hub queue full");
    // The silent client gets what was buffered, then the end of the stream.
    silent.expect_closed();
    // The blaster is unharmed and told the other client left. 16 MB is past its publish
    // budget (8 MiB a second, 2 s bursts), so it is also told of lines not relayed.
    assert_eq!(line_past_refusals(&mut blaster), format!("Client left {}", silent.addr));
    blaster.send("/who\n");
    assert_eq!(line_past_refusals(&mut blaster), format!("* 1 here: {}", blaster.addr));
}

/// The next line that is not a `* not relayed` notice.
fn line_past_refusals(client: &mut LineClient) -> String {
    loop {
        let line = client.line();
        if line != "* not relayed: over-budget" {
            return line;
        }
    }
}

/// A second handle on the same socket, for a reader thread.
fn reader_clone(s: &mut std::net::TcpStream) -> std::net::TcpStream {
    s.try_clone().unwrap()
}

fn plugin_copy(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::copy(plugin("chat"), &path).unwrap();
    path
}

#[test]
fn rooms_are_separate_unless_they_share_a_name() {
    let dir = std::env::temp_dir().join(format!("switchboard-rooms-{}", std::process::id()));
    let (lobby, annex, back) = (plugin_copy(&dir, "lobby"), plugin_copy(&dir, "annex"), plugin_copy(&dir, "back"));
    let specs: Vec<String> = [&lobby, &annex, &back].iter().map(|p| format!("{}@127.0.0.1:0", p.display())).collect();
    let server = Server::start(
        &[
            "--plugin",
            &specs[0],
            "--plugin",
            &specs[1],
            "--plugin",
            &specs[2],
            "--set",
            "back.ROOM=back",
            "--set",
            "back.GREETING=Welcome to the back room",
        ],
        3,
    );
    let mut l = join(server.addr(0), &mut []);
    let mut a = join(server.addr(1), std::slice::from_mut(&mut l)); // same room "chat"
    let mut b = LineClient::connect(server.addr(2));
    assert_eq!(b.line(), "Welcome to the back room");
    a.send("annex to lobby\n");
    assert_eq!(l.line(), format!("[{}] annex to lobby", a.addr));
    b.send("anyone?\n");
    l.send("marker\n");
    assert_eq!(a.line(), format!("[{}] marker", l.addr), "the back room leaked into the shared room");
    b.send("/who\n");
    assert_eq!(b.line(), format!("* 1 here: {}", b.addr));
}
