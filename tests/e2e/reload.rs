//! Hot reload: a plugins folder that is live. Drop a .wasm in and it serves; replace it
//! and new connections get the new version while open ones keep theirs; break it and the
//! last good version keeps serving; remove it and its port closes.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

const CHAT_WELCOME: &str = "You're connected to the switchboard chat server\r\n";

fn folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-reload-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replaces DIR/NAME.wasm atomically: write a temporary file, then rename it over.
fn place(dir: &Path, name: &str, src: &Path) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Version {
    Echo,
    Chat,
}

/// Which plugin answers a new connection (sends `ping`: echo replies, chat greets).
fn who_answers(addr: SocketAddr) -> std::io::Result<Version> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"ping")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < 10 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, format!("closed after {got:?}")));
        }
        got.extend_from_slice(&buf[..n]);
    }
    if got.starts_with(b"Echo=>ping") {
        Ok(Version::Echo)
    } else if CHAT_WELCOME.as_bytes().starts_with(&got[..got.len().min(CHAT_WELCOME.len())]) {
        Ok(Version::Chat)
    } else {
        Err(std::io::Error::other(format!("unexpected reply {:?}", String::from_utf8_lossy(&got))))
    }
}

/// Polls new connections until `want` answers; the time it took.
fn until_version(addr: SocketAddr, want: Version) -> Duration {
    let started = Instant::now();
    loop {
        if who_answers(addr).ok() == Some(want) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{want:?} never answered");
        thread::sleep(Duration::from_millis(5));
    }
}

fn echo_on(s: &mut TcpStream, msg: &str) {
    s.write_all(msg.as_bytes()).unwrap();
    assert_eq!(read_n(s, 6 + msg.len()), format!("Echo=>{msg}").as_bytes(), "the old connection lost its version");
}

fn svc_folder(tag: &str) -> PathBuf {
    let dir = folder(tag);
    place(&dir, "svc", &plugin("echo"));
    std::fs::write(dir.join("svc.toml"), "listen = [\"127.0.0.1:0\"]\n").unwrap();
    dir
}

#[test]
fn swaps_are_atomic_and_open_connections_keep_their_version() {
    let dir = svc_folder("swap");
    let server = Server::start(&["--plugins", dir.to_str().unwrap()], 1);
    let addr = server.addr(0);
    let mut old = connect(addr);
    echo_on(&mut old, "before");
    let mut seen = Vec::new();
    for i in 0..5 {
        let (src, want) = if i % 2 == 0 { (plugin("chat"), Version::Chat) } else { (plugin("echo"), Version::Echo) };
        place(&dir, "svc", &src);
        seen.push(until_version(addr, want));
        echo_on(&mut old, &format!("still echo after swap {i}"));
    }
    seen.sort();
    eprintln!("rename → new version served: median {:?}, all {seen:?}", seen[seen.len() / 2]);
    server.wait_for_log("swapped: new connections get the new version");
}

/// The registry never holds its lock across a compile: while one plugin's slow load is
/// under way (a Python component compiling with an empty cache, ~10 s), another plugin's
/// swap completes at once.
#[test]
fn a_slow_load_holds_up_no_other_plugins_swap() {
    let dir = svc_folder("slow");
    let cache = folder("slow-cache");
    // chat comes from the cache, echo-py does not. (Two compiles at once share the
    // compiler's thread pool, so a compiled chat would wait for echo-py's compile there;
    // this test is about the registry, which must not make it wait.)
    let (code, _, stderr) = run(&["check", "--cache-dir", cache.to_str().unwrap(), plugin("chat").to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let server = Server::start(&["--plugins", dir.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()], 1);
    let addr = server.addr(0);
    std::fs::write(dir.join("slow.toml"), "listen = [\"127.0.0.1:0\"]\n").unwrap();
    place(&dir, "slow", &plugin("echo-py"));
    // The watcher's debounce and the file's settling take ~70 ms; then slow compiles.
    thread::sleep(Duration::from_millis(500));
    place(&dir, "svc", &plugin("chat"));
    let took = until_version(addr, Version::Chat);
    assert!(!server.printed_listening(), "slow loaded before the swap was tried: the test proves nothing");
    assert!(took < Duration::from_secs(3), "the swap waited {took:?} for another plugin's load");
    let (name, _) = server.next_listening(START_PATIENCE);
    assert_eq!(name, "slow");
    eprintln!("svc swapped {took:?} after the rename while slow was compiling");
}

#[test]
fn a_plugin_added_on_a_busy_port_is_rejected_and_not_served() {
    let dir = folder("busy-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::start(&["--plugins", dir.to_str().unwrap()], 0);
    std::fs::write(dir.join("late.toml"), format!("listen = [\"{}\"]\n", taken.local_addr().unwrap())).unwrap();
    place(&dir, "late", &plugin("echo"));
    server.wait_for_log("rejected");
    let log = server.stderr();
    assert!(log.contains("cannot listen on") && log.contains("it is not served"), "{log}");
    assert!(!log.contains("the last good version keeps serving"), "there is no last good version:\n{log}");
}

#[test]
fn bad_writes_are_rejected_copies_in_place_picked_up_deletes_close_and_new_files_start() {
    let dir = svc_folder("lifecycle");
    let server = Server::start(&["--plugins", dir.to_str().unwrap()], 1);
    let addr = server.addr(0);

    std::fs::write(dir.join("svc.wasm"), b"definitely not wasm").unwrap();
    server.wait_for_log("rejected");
    assert_eq!(who_answers(addr).unwrap(), Version::Echo, "the last good version stopped serving");

    // `cp` over the file: truncate, then write, in place.
    std::fs::copy(plugin("chat"), dir.join("svc.wasm")).unwrap();
    until_version(addr, Version::Chat);

    std::fs::remove_file(dir.join("svc.wasm")).unwrap();
    let started = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(started.elapsed() < Duration::from_secs(5), "the port still accepts after the file was deleted");
        thread::sleep(Duration::from_millis(10));
    }
    server.wait_for_log("removed: no longer accepting");

    std::fs::write(dir.join("fresh.toml"), "listen = [\"127.0.0.1:0\"]\n[settings]\nPREFIX = \"fresh: \"\n").unwrap();
    place(&dir, "fresh", &plugin("echo"));
    let (name, fresh) = server.next_listening(Duration::from_secs(10));
    assert_eq!(name, "fresh");
    let mut s = connect(fresh);
    s.write_all(b"hi").unwrap();
    assert_eq!(read_n(&mut s, 9), b"fresh: hi");
}

#[test]
fn sidecar_changes_reapply_settings_and_listeners_without_moving_the_port() {
    let dir = folder("sidecar");
    std::fs::write(dir.join("svc.toml"), "listen = [\"127.0.0.1:0\"]\n[settings]\nPREFIX = \"A:\"\n").unwrap();
    place(&dir, "svc", &plugin("echo"));
    let server = Server::start(&["--plugins", dir.to_str().unwrap()], 1);
    let addr = server.addr(0);
    let reply = |addr| {
        let mut s = connect(addr);
        s.write_all(b"x").unwrap();
        read_n(&mut s, 3)
    };
    assert_eq!(reply(addr), b"A:x");
    std::fs::write(dir.join("svc.toml"), "listen = [\"127.0.0.1:0\"]\n[settings]\nPREFIX = \"B:\"\n").unwrap();
    let started = Instant::now();
    while reply(addr) != b"B:x" {
        assert!(started.elapsed() < Duration::from_secs(10), "the new setting never applied");
        thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(dir.join("svc.toml"), "listen = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n[settings]\nPREFIX = \"B:\"\n").unwrap();
    std::fs::write(dir.join("svc.toml"), "listen = [\"127.0.0.1:0\", \"udp:127.0.0.1:0\"]\n[settings]\nPREFIX = \"B:\"\n").unwrap();
    let (name, udp) = server.next_listening(Duration::from_secs(10));
    assert_eq!(name, "svc");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sock.send_to(b"dgram", udp).unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"B:dgram");
    assert_eq!(reply(addr), b"B:x", "the tcp listener moved or closed");
    std::fs::write(dir.join("svc.toml"), "listen = [\"127.0.0.1:0\"]\nbogus = 1\n").unwrap();
    server.wait_for_log("unknown field `bogus`");
    assert_eq!(reply(addr), b"B:x", "a broken sidecar must not stop the service");
}

#[test]
fn twenty_swaps_while_a_client_hammers_lose_no_connection() {
    let dir = svc_folder("hammer");
    let server = Server::start(&["--plugins", dir.to_str().unwrap()], 1);
    let addr = server.addr(0);
    let done = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let (done, ok, failed) = (done.clone(), ok.clone(), failed.clone());
            thread::spawn(move || {
                let mut errors = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    match who_answers(addr) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.push(e.to_string());
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                errors
            })
        })
        .collect();
    for i in 0..20 {
        place(&dir, "svc", &if i % 2 == 0 { plugin("chat") } else { plugin("echo") });
        thread::sleep(Duration::from_millis(150));
    }
    done.store(true, Ordering::Relaxed);
    let errors: Vec<String> = hammers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    eprintln!("20 swaps: {} connections served, {} failed", ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(errors.is_empty(), "failed connections during swaps: {errors:?}");
    assert!(ok.load(Ordering::Relaxed) > 40);
}

#[test]
fn a_warm_cache_means_no_recompilation_on_restart() {
    let cache = folder("cache");
    let echo = format!("{}@127.0.0.1:0", plugin("echo").display());
    let args = ["--plugin", &echo, "--cache-dir", cache.to_str().unwrap()];
    let cold = Server::start(&args, 1);
    cold.wait_for_log("cached=false");
    drop(cold);
    let warm = Server::start(&args, 1);
    warm.wait_for_log("cached=true");
    assert!(!warm.stderr().contains("cached=false"));

    // A corrupt entry is ignored and rebuilt, never trusted.
    for entry in walk(&cache) {
        if entry.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&entry).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&entry, bytes).unwrap();
        }
    }
    drop(warm);
    let rebuilt = Server::start(&args, 1);
    rebuilt.wait_for_log("ignoring a corrupt cache entry");
    rebuilt.wait_for_log("cached=false");
    seed_echo_client(rebuilt.addr(0), &[b"spam"]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
