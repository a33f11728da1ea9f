//! Limits and reliability: no client and no plugin can hurt anyone else's connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

fn spec(path: &std::path::Path) -> String {
    format!("{}@127.0.0.1:0", path.display())
}

/// Reads until the server closes; true if it closed (EOF or reset) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut sink = [0u8; 65536];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn misbehaving_plugins_hurt_nobody_else() {
    let modes = [("panicky", "panic"), ("oom", "alloc"), ("deep", "recurse"), ("busy", "busy"), ("flood", "flood")];
    let mut args: Vec<String> = vec!["--plugin".into(), spec(&plugin("echo"))];
    for (name, mode) in modes {
        args.extend(["--plugin".into(), spec(&copy_as(&fixture("misbehave"), name)), "--set".into(), format!("{name}.MODE={mode}")]);
    }
    args.extend(["--cpu-budget", "2s", "--memory-limit", "64MiB", "--idle-timeout", "3s"].map(String::from));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&argv, 1 + modes.len());
    let echo = server.addr(0);
    let addr = |name: &str| server.listeners.iter().find(|(n, _)| n == name).unwrap().1;

    // Eight echo clients talk for the whole attack.
    let talkers = EchoTalkers::start(echo, 8);

    // Two busy loops: each must be ended by its CPU budget, within 10 s.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let a = addr("busy");
            thread::spawn(move || {
                let mut s = connect(a);
                s.write_all(b"go").unwrap();
                let started = Instant::now();
                assert!(closed_within(&mut s, Duration::from_secs(10)), "a busy loop outlived 10 s");
                started.elapsed()
            })
        })
        .collect();
    // Flood writers whose clients never read.
    let floods: Vec<TcpStream> = (0..3).map(|_| connect(addr("flood"))).collect();
    // 25 connections each for panic, OOM and stack overflow, three at a time per kind.
    let crashers: Vec<_> = ["panicky", "oom", "deep"]
        .iter()
        .flat_map(|name| (0..3).map(move |_| *name))
        .map(|name| {
            let a = addr(name);
            thread::spawn(move || {
                for _ in 0..(25 / 3 + 1) {
                    let mut s = connect(a);
                    s.write_all(b"crash").unwrap();
                    assert!(closed_within(&mut s, Duration::from_secs(10)), "{name}: the connection stayed open");
                }
            })
        })
        .collect();
    let mut peak_rss = 0;
    while crashers.iter().any(|c| !c.is_finished()) {
        peak_rss = peak_rss.max(server.rss_kib());
        thread::sleep(Duration::from_millis(50));
    }
    for c in crashers {
        c.join().expect("a crashing connection was not closed");
    }
    for b in busy {
        let took = b.join().expect("a busy loop was not stopped");
        eprintln!("busy loop closed after {took:?}");
    }
    peak_rss = peak_rss.max(server.rss_kib());
    let (exchanges, errors) = talkers.stop();
    drop(floods);
    eprintln!("echo exchanges during the attack: {}; peak RSS {} MiB", exchanges, peak_rss / 1024);
    let echo_lines = || server.stderr().lines().filter(|l| l.contains("plugin=echo")).take(20).collect::<Vec<_>>().join("\n");
    assert_eq!(errors, 0, "echo clients saw errors; the server said about echo:\n{}", echo_lines());
    assert!(exchanges > 100, "echo clients made no progress");
    assert!(peak_rss < 512 * 1024, "host RSS reached {} MiB", peak_rss / 1024);
    let log = server.stderr();
    for needle in ["panicking on purpose", "memory limit", "cpu budget"] {
        assert!(log.contains(needle), "{needle:?} not in the log:\n{}", &log[log.len().saturating_sub(4000)..]);
    }
    // The crashing plugins were quarantined in the heavy lane; echo never was.
    let quarantined = |plugin: &str| log.lines().any(|l| l.contains("run in the heavy lane") && l.contains(&format!("plugin={plugin}")));
    for plugin in ["panicky", "oom", "deep", "busy"] {
        assert!(quarantined(plugin), "{plugin} was not quarantined");
    }
    assert!(!quarantined("echo"), "echo was quarantined");
}

#[test]
fn silent_connections_are_closed_at_the_idle_timeout_and_do_not_delay_others() {
    raise_fd_limit();
    let server = Server::start(&["--plugin", &spec(&plugin("echo")), "--idle-timeout", "3s"], 1);
    let addr = server.addr(0);
    let opened = Instant::now();
    let mut silent: Vec<TcpStream> = (0..1000).map(|_| connect(addr)).collect();
    let mut fresh = connect(addr);
    let asked = Instant::now();
    assert!(echo_once(&mut fresh, b"hello"), "a fresh client was not served");
    eprintln!("fresh client answered in {:?} beside 1000 silent ones", asked.elapsed());
    assert!(asked.elapsed() < Duration::from_secs(2), "a fresh client waited {:?}", asked.elapsed());
    for s in silent.iter_mut() {
        let left = Duration::from_secs(12).saturating_sub(opened.elapsed()).max(Duration::from_millis(10));
        assert!(closed_within(s, left), "a silent connection outlived the idle timeout");
    }
    eprintln!("1000 silent connections closed after {:?}", opened.elapsed());
    assert!(opened.elapsed() >= Duration::from_secs(3), "closed before the idle timeout");
}

/// Opens `n` connections, holds them, and counts how many get an echo and how many are
/// closed at once.
pub(crate) fn admitted(addr: SocketAddr, n: usize) -> (usize, usize, Vec<TcpStream>) {
    let mut held = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for _ in 0..n {
        let mut s = connect(addr);
        if echo_once(&mut s, b"hi") {
            served += 1;
            held.push(s);
        } else {
            refused += 1;
        }
    }
    (served, refused, held)
}

#[test]
fn max_connections_serves_exactly_that_many() {
    let server = Server::start(&["--plugin", &spec(&plugin("echo")), "--max-connections", "100"], 1);
    let started = Instant::now();
    let (served, refused, held) = admitted(server.addr(0), 150);
    assert_eq!((served, refused), (100, 50));
    assert!(started.elapsed() < Duration::from_secs(10), "refusals were not prompt");
    drop(held);
    server.wait_for_log("max connections reached");
}

#[test]
fn more_connections_than_memory_images_allow_are_all_served_with_images_copied_in() {
    // 12,000 open at once: more than the pool holds with copy-on-write memory images in
    // vm.max_map_count = 65,530 (10,729), so serve copies the images in instead (two
    // memory-map areas less per instance) and says so; every connection answers.
    raise_fd_limit();
    let max_map_count: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap().trim().parse().unwrap();
    let n: usize = 12_000;
    assert!(max_map_count < 6 * n as u64, "vm.max_map_count {max_map_count} holds {n} connections with images: nothing to show");
    let echo = spec(&plugin("echo"));
    let server = Server::start(&["--plugin", &echo, "--max-connections", "13000"], 1);
    server.wait_for_log("memory images are copied into each instance");
    let addr = server.addr(0);
    let mut open: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    let answered = open.iter_mut().map(|s| echo_once(s, b"still here?")).filter(|&ok| ok).count();
    assert_eq!(answered, n, "every open connection answers");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", server.pid())).unwrap().lines().count() as u64;
    assert!(maps < max_map_count, "{maps} memory-map areas for {n} connections");
    assert!(!server.stderr().contains("trap"), "an instance trapped:\n{}", server.stderr());
}

#[test]
fn per_ip_limit_and_address_rules() {
    let echo = spec(&plugin("echo"));
    let server = Server::start(&["--plugin", &echo, "--max-per-ip", "2"], 1);
    let (served, refused, _held) = admitted(server.addr(0), 3);
    assert_eq!((served, refused), (2, 1));
    drop(server);

    let server = Server::start(&["--plugin", &echo, "--deny", "127.0.0.0/8"], 1);
    assert_eq!(admitted(server.addr(0), 2).0, 0, "--deny 127.0.0.0/8 let loopback in");
    server.wait_for_log("address not allowed");
    drop(server);

    let server = Server::start(&["--plugin", &echo, "--deny", "127.0.0.0/8", "--allow", "127.0.0.1/32"], 1);
    assert_eq!(admitted(server.addr(0), 2).0, 2, "--allow 127.0.0.1/32 did not let it back in");
}

#[test]
fn sigterm_refuses_new_connections_and_drains_the_open_ones() {
    let mut server = Server::start(&["--plugin", &spec(&plugin("echo")), "--drain-timeout", "5s"], 1);
    let addr = server.addr(0);
    let mut open: Vec<TcpStream> = (0..50).map(|_| connect(addr)).collect();
    for s in open.iter_mut() {
        assert!(echo_once(s, b"before"));
    }
    server.signal(libc::SIGTERM);
    let signalled = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            _ => assert!(signalled.elapsed() < Duration::from_secs(1), "still accepting 1 s after SIGTERM"),
        }
        thread::sleep(Duration::from_millis(20));
    }
    for s in open.iter_mut() {
        assert!(echo_once(s, b"after the signal"), "an in-flight connection was cut");
    }
    drop(open);
    let code = server.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "did not exit 0 before the drain timeout");
    assert!(signalled.elapsed() < Duration::from_secs(5));

    // A second signal does not wait for the drain.
    let mut server = Server::start(&["--plugin", &spec(&plugin("echo")), "--drain-timeout", "60s"], 1);
    let mut held = connect(server.addr(0));
    assert!(echo_once(&mut held, b"x"));
    server.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(300));
    assert!(server.alive(), "exited without draining");
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(2)).is_some(), "a second SIGTERM did not exit at once");
}

#[test]
fn a_plugin_printing_in_a_loop_cannot_flood_the_log() {
    let chatty = copy_as(&fixture("misbehave"), "chatty");
    let server = Server::start(&["--plugin", &spec(&chatty), "--set", "chatty.MODE=print", "--cpu-budget", "2s"], 1);
    let mut s = connect(server.addr(0));
    s.write_all(b"go").unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(20)), "the printing plugin was not stopped by its CPU budget");
    server.wait_for_log("connection ended by a limit");
    let log = server.stderr();
    let printed = log.lines().filter(|l| l.contains("stdout: chatty line")).count();
    let allowed = 100 * (started.elapsed().as_secs() as usize + 2);
    eprintln!("chatty plugin: {printed} lines logged in {:?}", started.elapsed());
    assert!(printed > 0, "nothing of the plugin's output was logged");
    assert!(printed <= allowed, "{printed} output lines logged; the allowance is 100 per second");
    assert!(
        log.lines().any(|l| l.contains("suppressed=") && !l.contains("suppressed=0") && l.contains("stdout:")),
        "no line says how many were suppressed"
    );
}

#[test]
fn a_writer_whose_client_never_reads_keeps_host_memory_flat() {
    let flood = copy_as(&fixture("misbehave"), "writer");
    let server = Server::start(&["--plugin", &spec(&flood), "--set", "writer.MODE=flood"], 1);
    let clients: Vec<TcpStream> = (0..10).map(|_| connect(server.addr(0))).collect();
    thread::sleep(Duration::from_secs(1));
    let before = server.rss_kib();
    thread::sleep(Duration::from_secs(3));
    let after = server.rss_kib();
    eprintln!("flood writers, clients not reading: RSS {before} KiB → {after} KiB");
    assert!(after < before + 8 * 1024, "RSS grew from {before} to {after} KiB");
    drop(clients);
}

#[test]
fn a_refused_client_gets_the_busy_line_and_keepalive_probes_a_quiet_one() {
    let dir = std::env::temp_dir().join(format!("switchboard-e2e-busy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(plugin("echo"), dir.join("echo.wasm")).unwrap();
    std::fs::write(
        dir.join("echo.toml"),
        "listen = [\"127.0.0.1:0\"]\nbusy = \"busy: one client at a time, try again later\\r\\n\"\n\
         [limits]\nmax-connections = 1\nkeepalive = \"45s\"\nidle-timeout = \"off\"\n",
    )
    .unwrap();
    let server = Server::start(&["--plugins", dir.to_str().unwrap()], 1);
    let addr = server.addr(0);
    let mut first = connect(addr);
    assert!(echo_once(&mut first, b"hello"), "the first client is served");
    let mut second = connect(addr);
    let mut said = String::new();
    second.read_to_string(&mut said).unwrap();
    assert_eq!(said, "busy: one client at a time, try again later\r\n", "then the close");
    // The kernel's keepalive timer runs on the served connection (ss shows it).
    let port = first.local_addr().unwrap().port();
    let out = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established", &format!("( sport = :{} and dport = :{port} )", addr.port())])
        .output()
        .expect("ss (Debian's iproute2; .ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("timer:(keepalive,"), "the server's side of the connection has no keepalive timer:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
