//! The echo plugin against the seed echo clients. The seed transcript and pure echo are
//! functions of the plugin file, so every echo implementation runs the same checks.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::thread;

use crate::support::*;

fn echo_spec(listen: &str) -> String {
    spec(&plugin("echo"), listen)
}

fn spec(plugin: &Path, listen: &str) -> String {
    format!("{}@{listen}", plugin.display())
}

/// The seed echo client, then 32 of them at once over two listeners.
pub fn seed_transcript(plugin: &Path) {
    let server = Server::start(&["--plugin", &spec(plugin, "127.0.0.1:0,127.0.0.1:0")], 2);
    assert_eq!(server.listeners[0].0, plugin_name(plugin));
    assert_ne!(server.addr(0), server.addr(1));
    seed_echo_client(server.addr(0), &[b"spam", b"Spam", b"SPAM"]);
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let addr = server.addr(i % 2);
            thread::spawn(move || seed_echo_client(addr, &[b"spam", b"Spam", b"SPAM", format!("client {i}").as_bytes()]))
        })
        .collect();
    for c in clients {
        c.join().expect("an echo client failed");
    }
}

/// The seed's own echo client (tests/clients/echo-client.py, the book's listing ported to
/// Python 3) against `plugin`: its exact output.
pub fn seed_client_script(plugin: &Path) {
    let server = Server::start(&["--plugin", &spec(plugin, "127.0.0.1:0")], 1);
    let out = std::process::Command::new("python3")
        .args([&repo_file("tests/clients/echo-client.py"), "127.0.0.1", "spam", "Spam", "SPAM"])
        .env("PORT", server.addr(0).port().to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("python3 is required (.ci/run checks for it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the seed client failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "Client received: b'Echo=>spam'\nClient received: b'Echo=>Spam'\nClient received: b'Echo=>SPAM'\n");
}

/// `PREFIX` empty: RFC 862 echo, read back 16 bytes at a time.
pub fn pure_echo(plugin: &Path) {
    let prefix = format!("{}.PREFIX=", plugin_name(plugin));
    let server = Server::start(&["--plugin", &spec(plugin, "127.0.0.1:0"), "--set", &prefix], 1);
    let mut s = connect(server.addr(0));
    let message = b"The quick brown fox jumps over a lazy dog!";
    assert_eq!(message.len(), 42);
    s.write_all(message).unwrap();
    let mut got = Vec::new();
    while got.len() < message.len() {
        let mut chunk = [0u8; 16];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(got, message);
}

#[test]
fn seed_transcript_and_16_parallel_clients_on_two_listeners() {
    seed_transcript(&plugin("echo"));
}

#[test]
fn the_seed_client_script_gets_its_echoes() {
    seed_client_script(&plugin("echo"));
}

#[test]
fn pure_echo_read_16_bytes_at_a_time() {
    pure_echo(&plugin("echo"));
}

#[test]
fn prefix_setting_replaces_echo() {
    let server = Server::start(&["--plugin", &echo_spec("127.0.0.1:0"), "--set", "echo.PREFIX=you said: "], 1);
    let mut s = connect(server.addr(0));
    s.write_all(b"hi").unwrap();
    assert_eq!(read_n(&mut s, 12), b"you said: hi");
}

#[test]
fn ten_mib_byte_exact_while_another_client_chats() {
    let server = Server::start(&["--plugin", &echo_spec("127.0.0.1:0"), "--set", "echo.PREFIX="], 1);
    let addr = server.addr(0);
    let data: Vec<u8> = (0..10u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut bulk = connect(addr);
    let mut writer = bulk.try_clone().unwrap();
    let sent = data.clone();
    let write = thread::spawn(move || {
        for chunk in sent.chunks(64 * 1024) {
            writer.write_all(chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let chat = thread::spawn(move || {
        let mut s = connect(addr);
        for i in 0..200 {
            let msg = format!("message {i}");
            s.write_all(msg.as_bytes()).unwrap();
            assert_eq!(read_n(&mut s, msg.len()), msg.as_bytes());
        }
    });
    let mut got = Vec::with_capacity(data.len());
    bulk.read_to_end(&mut got).unwrap();
    write.join().unwrap();
    chat.join().expect("the chatting client failed");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "10 MiB came back altered");
}

#[test]
fn half_closed_client_still_receives_every_echo() {
    let server = Server::start(&["--plugin", &echo_spec("127.0.0.1:0")], 1);
    let mut s = connect(server.addr(0));
    let mut expected = Vec::new();
    for i in 0..50 {
        let msg = format!("line {i}\n");
        s.write_all(msg.as_bytes()).unwrap();
        expected.extend_from_slice(msg.as_bytes());
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    // Chunking is TCP's business; strip every prefix and the payload must be intact.
    let text = String::from_utf8(got).unwrap();
    assert!(text.starts_with("Echo=>"), "{text:?}");
    assert_eq!(text.replace("Echo=>", "").as_bytes(), expected);
}

#[test]
fn a_client_vanishing_mid_write_leaves_others_unharmed() {
    let mut server = Server::start(&["--plugin", &echo_spec("127.0.0.1:0")], 1);
    let addr = server.addr(0);
    let steady = thread::spawn(move || {
        let mut s = connect(addr);
        for i in 0..300 {
            let msg = format!("steady {i}");
            s.write_all(msg.as_bytes()).unwrap();
            assert_eq!(read_n(&mut s, 6 + msg.len()), format!("Echo=>{msg}").as_bytes());
        }
    });
    for _ in 0..20 {
        // Write a lot, read nothing, and close: the kernel resets the connection while the
        // plugin is still writing echoes.
        let mut s = connect(addr);
        let _ = s.write_all(&vec![b'x'; 256 * 1024]);
        drop(s);
    }
    steady.join().expect("the steady client was disturbed");
    seed_echo_client(addr, &[b"still here"]);
    assert!(server.alive());
}
