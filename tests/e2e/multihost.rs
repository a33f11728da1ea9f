//! Two `switchboard serve --hub redis://…` processes on one real redis-server, serving
//! plugins/chat.wasm: one chat across both hosts, and what happens when Redis or a host
//! goes away.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::ports::ReservedPort;
use crate::support::*;

const WELCOME: &str = "You're connected to the switchboard chat server";
/// What a host logs once it is subscribed and its presence is in Redis.
const CONNECTED: &str = "hub backplane: connected to Redis";
/// The presence expiry (host/src/guest/hub/redis.rs) plus a heartbeat and some slack.
const GONE_WITHIN: Duration = Duration::from_secs(5 + 1 + 2);

/// A redis-server of our own: on its own port, held for it while it is down too, in
/// its own temp dir, no persistence.
struct Redis {
    child: Option<Child>,
    port: ReservedPort,
    dir: PathBuf,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_on(ReservedPort::new())
    }

    fn start_on(port: ReservedPort) -> Redis {
        let dir = std::env::temp_dir().join(format!("switchboard-redis-{}-{}", std::process::id(), port.port));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis { child: None, port, dir };
        redis.restart();
        redis
    }

    /// Starts (again) on the same port.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir".as_ref(), self.dir.as_os_str()])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the multi-host tests need it; install the Debian package redis-server (.ci/run does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while !self.pong() {
            assert!(Instant::now() < deadline, "redis-server on port {} never answered PING", self.port.port);
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn pong(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port.port)) else { return false };
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut reply = [0; 7];
        s.write_all(b"PING\r\n").is_ok() && std::io::Read::read_exact(&mut s, &mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// `kill -9`: no goodbye to its clients.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `sig` (SIGSTOP: Redis stops answering; SIGCONT: it goes on).
    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, sig) };
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A chat host on `url`; waits until it says it is connected, if `connected`.
fn chat_host(url: &str, connected: bool) -> Server {
    let spec = format!("{}@127.0.0.1:0", plugin("chat").display());
    let server = Server::start(&["--plugin", &spec, "--hub", url], 1);
    if connected {
        server.wait_for_log(CONNECTED);
    }
    server
}

/// Connects and reads the welcome; every client in `earlier` (on any host) hears the join.
fn join(addr: SocketAddr, earlier: &mut [&mut LineClient]) -> LineClient {
    let mut c = LineClient::connect(addr);
    assert_eq!(c.line(), WELCOME);
    for e in earlier.iter_mut() {
        assert_eq!(e.line(), format!("Client joined {}", c.addr), "what {} heard", e.addr);
    }
    c
}

/// Asks `/who` until the answer is `want` (presence crosses hosts at the heartbeat).
fn who_until(c: &mut LineClient, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        c.send("/who\n");
        let got = c.line();
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "/who still says {got:?} after {limit:?}, want {want:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_hosts_share_one_chat() {
    let redis = Redis::start();
    let (a, b) = (chat_host(&redis.url(), true), chat_host(&redis.url(), true));
    let mut a1 = join(a.addr(0), &mut []);
    let mut b1 = join(b.addr(0), &mut [&mut a1]);
    let mut a2 = join(a.addr(0), &mut [&mut a1, &mut b1]);

    // A line from one host reaches every client of the other, as `[HOST:PORT] line`.
    b1.send("hello from B\r\n");
    for c in [&mut a1, &mut a2] {
        assert_eq!(c.line(), format!("[{}] hello from B", b1.addr));
    }
    a1.send("hi from A\n");
    assert_eq!(a2.line(), format!("[{}] hi from A", a1.addr));
    assert_eq!(b1.line(), format!("[{}] hi from A", a1.addr));

    // A nick set on B shows on A, in lines and in /who (oldest first, both hosts).
    b1.send("/nick bob\n");
    assert_eq!(b1.line(), "* you are now known as bob");
    for c in [&mut a1, &mut a2] {
        assert_eq!(c.line(), format!("* {} is now known as bob", b1.addr));
    }
    b1.send("x\n");
    assert_eq!(a1.line(), "[bob] x");
    assert_eq!(a2.line(), "[bob] x");
    let want = format!("* 3 here: {}, bob, {}", a1.addr, a2.addr);
    who_until(&mut a1, &want, Duration::from_secs(5));
    who_until(&mut b1, &want, Duration::from_secs(5));

    // A leave on A reaches B, and B's /who follows.
    let gone = a2.addr.clone();
    drop(a2);
    assert_eq!(a1.line(), format!("Client left {gone}"));
    assert_eq!(b1.line(), format!("Client left {gone}"));
    who_until(&mut b1, &format!("* 2 here: {}, bob", a1.addr), Duration::from_secs(5));

    // Nobody gets their own line back, not even through Redis: the next line a1 reads
    // after its own is bob's.
    a1.send("mine\n");
    assert_eq!(b1.line(), format!("[{}] mine", a1.addr));
    b1.send("yours\n");
    assert_eq!(a1.line(), "[bob] yours");
}

#[test]
fn chat_survives_a_redis_restart_and_crosses_again_within_two_seconds() {
    let mut redis = Redis::start();
    let spec = format!("{}@127.0.0.1:0", plugin("chat").display());
    // Host A also serves the admin endpoint: the backplane's counts follow the outage.
    let a = Server::start(&["--plugin", &spec, "--hub", &redis.url(), "--admin", "127.0.0.1:0"], 2);
    a.wait_for_log(CONNECTED);
    let admin = crate::admin::admin_addr(&a);
    let b = chat_host(&redis.url(), true);
    let before = crate::metrics::scrape(admin);
    assert_eq!(before.value("switchboard_hub_backplane_up", &[]), 1.0);
    assert_eq!(before.value("switchboard_hub_backplane_connects_total", &[]), 1.0);
    let mut a1 = join(a.addr(0), &mut []);
    let mut a2 = join(a.addr(0), &mut [&mut a1]);
    let mut b1 = join(b.addr(0), &mut [&mut a1, &mut a2]);

    redis.kill();
    a.wait_for_log("hub backplane: lost Redis");
    b.wait_for_log("hub backplane: lost Redis");
    // Local delivery goes on without Redis.
    a1.send("while redis is down\n");
    assert_eq!(a2.line(), format!("[{}] while redis is down", a1.addr));

    redis.restart();
    let restarted = Instant::now();
    // a1 says something every 100 ms until b1 hears one of it.
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let (mut s, done) = (a1.stream.try_clone().unwrap(), done.clone());
        thread::spawn(move || {
            for i in 0..200 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                s.write_all(format!("probe {i}\n").as_bytes()).unwrap();
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let first = b1.line();
    let crossed = restarted.elapsed();
    done.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    assert!(first.starts_with(&format!("[{}] probe ", a1.addr)), "{first:?}");
    assert!(crossed < Duration::from_secs(2), "the first line crossed {crossed:?} after Redis came back");

    // The rest of the probes, then cross-host in both directions again.
    a1.send("after probes\n");
    let want = format!("[{}] after probes", a1.addr);
    assert!((0..250).map(|_| b1.line()).any(|l| l == want), "b1 never got {want:?}");
    b1.send("back\n");
    let want = format!("[{}] back", b1.addr);
    assert!((0..250).map(|_| a2.line()).any(|l| l == want), "a2 never got {want:?}");
    assert_eq!(a1.line(), want);
    for host in [&a, &b] {
        assert!(host.stderr().matches(CONNECTED).count() >= 2, "no reconnect logged:\n{}", host.stderr());
    }
    let after = crate::metrics::scrape(admin);
    assert_eq!(after.value("switchboard_hub_backplane_up", &[]), 1.0);
    assert!(after.value("switchboard_hub_backplane_connects_total", &[]) >= 2.0, "{:?}", after.families.keys());
    assert!(after.value("switchboard_hub_backplane_disconnects_total", &[]) >= 1.0);
    assert!(after.value("switchboard_hub_backplane_messages_total", &[("direction", "sent")]) >= 1.0);
    assert!(after.value("switchboard_hub_backplane_messages_total", &[("direction", "received")]) >= 1.0);
}

#[test]
fn serve_starts_without_redis_and_connects_when_it_comes_up() {
    let reserved = ReservedPort::new();
    let port = reserved.port;
    let url = format!("redis://127.0.0.1:{port}");
    // Host B has its hub in its config file's [serve] table instead of --hub.
    let dir = std::env::temp_dir().join(format!("switchboard-multihost-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("switchboard.toml");
    let table =
        format!("[serve]\nhub = \"{url}\"\n\n[chat]\npath = {:?}\nlisten = [\"127.0.0.1:0\"]\n", plugin("chat").display().to_string());
    std::fs::write(&config, table).unwrap();
    let a = chat_host(&url, false);
    let b = Server::start(&["--config", config.to_str().unwrap()], 1);
    b.wait_for_log("hub backplane: Redis is unreachable");
    a.wait_for_log("hub backplane: Redis is unreachable");
    // Local rooms are served meanwhile.
    let mut a1 = join(a.addr(0), &mut []);
    let mut a2 = join(a.addr(0), &mut [&mut a1]);
    a2.send("local only\n");
    assert_eq!(a1.line(), format!("[{}] local only", a2.addr));

    let _redis = Redis::start_on(reserved);
    a.wait_for_log(CONNECTED);
    b.wait_for_log(CONNECTED);
    let mut b1 = join(b.addr(0), &mut [&mut a1, &mut a2]);
    let want = format!("* 3 here: {}, {}, {}", a1.addr, a2.addr, b1.addr);
    who_until(&mut b1, &want, Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_host_leaves_the_others_who_within_the_expiry() {
    let redis = Redis::start();
    let (a, b) = (chat_host(&redis.url(), true), chat_host(&redis.url(), true));
    let mut a1 = join(a.addr(0), &mut []);
    let b1 = join(b.addr(0), &mut [&mut a1]);
    let want = format!("* 2 here: {}, {}", a1.addr, b1.addr);
    who_until(&mut a1, &want, Duration::from_secs(5));

    b.signal(libc::SIGKILL);
    let want = format!("* 1 here: {}", a1.addr);
    let gone = who_until(&mut a1, &want, GONE_WITHIN);
    assert!(gone <= GONE_WITHIN, "{gone:?}");
    drop(b1);
}

#[test]
fn a_stalled_redis_costs_dropped_messages_not_host_memory() {
    let redis = Redis::start();
    // Two rooms, one talker each: each may publish 2,000 lines in a burst, and the two
    // bursts together (16 MB) are twice the host's outbound queue to Redis.
    let chat2 = copy_as(&plugin("chat"), "chat2");
    let (one, two) = (format!("{}@127.0.0.1:0", plugin("chat").display()), format!("{}@127.0.0.1:0", chat2.display()));
    let mut a = Server::start(&["--plugin", &one, "--plugin", &two, "--set", "chat2.ROOM=other", "--hub", &redis.url()], 2);
    a.wait_for_log(CONNECTED);
    let mut talkers = [join(a.addr(0), &mut []), join(a.addr(1), &mut [])];
    let before = a.rss_kib();

    redis.signal(libc::SIGSTOP);
    let line = format!("{}\n", "x".repeat(4000));
    let writers: Vec<_> = talkers
        .iter()
        .map(|t| {
            let (mut s, line) = (t.stream.try_clone().unwrap(), line.clone());
            thread::spawn(move || {
                for _ in 0..2000 {
                    s.write_all(line.as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // Each talker hears its own /who once its 2,000 lines are through the plugin.
    for t in &mut talkers {
        t.send("/who\n");
        assert_eq!(t.line(), format!("* 1 here: {}", t.addr));
    }
    a.wait_for_log("hub backplane: Redis is not keeping up; messages to other hosts are dropped");
    let grown = a.rss_kib().saturating_sub(before);
    // The queue holds at most 8 MiB (and one 1 MiB pipeline is in flight); keeping all
    // 16 MB (twice over: payload and channel copies) would show here.
    assert!(grown < 24 * 1024, "the host grew by {grown} KiB while Redis was stalled");

    redis.signal(libc::SIGCONT);
    drop(talkers);
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(PATIENCE), Some(0), "{}", a.stderr());
    let counts = a.stderr().lines().find(|l| l.contains("hub backplane stopped")).unwrap_or_default().to_string();
    eprintln!("stalled redis: grew {grown} KiB; {counts}");
    assert!(!counts.contains("dropped_full=0 "), "{counts}");
}
