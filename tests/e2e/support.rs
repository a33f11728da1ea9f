//! Starting the server and talking to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long any single read may take before a test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How long a server may take to print its `listening` lines: it compiles each plugin
/// first, ~10 s for a Python or JavaScript component when nothing else runs, and tests run
/// in parallel on few cores.
pub const START_PATIENCE: Duration = Duration::from_secs(120);

/// The `switchboard` binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchboard"))
}

/// A directory `cargo xtask test` names in `var`. Under a plain `cargo test` it is not
/// set: then the whole run stops at once with one line saying what to run, instead of
/// every test panicking on its own.
fn dir_from_env(var: &str) -> PathBuf {
    static STOP: std::sync::Once = std::sync::Once::new();
    match std::env::var_os(var) {
        Some(dir) => PathBuf::from(dir),
        None => {
            // The first test to get here exits the process; the others wait on the Once.
            STOP.call_once(|| {
                eprintln!("\ne2e: {var} is not set: run `cargo xtask test`, which builds the plugins these tests serve");
                std::process::exit(2);
            });
            unreachable!("the process exited")
        }
    }
}

/// A file of this repository by its path from the root, e.g. `repo_file("Cargo.toml")`.
/// The path comes from the environment `cargo test` runs tests in, not from compile time:
/// a target directory shared between checkouts can hold a test binary built in another.
pub fn repo_file(relative: &str) -> String {
    let host = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    format!("{host}/../{relative}")
}

/// A shipped plugin, e.g. `plugin("echo")` → plugins/echo.wasm.
pub fn plugin(name: &str) -> PathBuf {
    let path = dir_from_env("SWITCHBOARD_PLUGINS").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run `cargo xtask test`", path.display());
    path
}

/// A plugin's name as the host derives it: the file stem (plugins/echo-py.wasm → echo-py).
pub fn plugin_name(path: &Path) -> String {
    path.file_stem().expect("a plugin file name").to_string_lossy().into_owned()
}

/// A test fixture plugin.
pub fn fixture(name: &str) -> PathBuf {
    let path = dir_from_env("SWITCHBOARD_FIXTURES").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run `cargo xtask test`", path.display());
    path
}

/// A running `switchboard serve`; killed when dropped.
pub struct Server {
    child: Child,
    /// `(plugin name, address)` for every `tcp://` or `udp://` `listening` line, in order.
    pub listeners: Vec<(String, SocketAddr)>,
    /// `(plugin name, URL)` for every `listening` line (serial ones included), in order.
    pub urls: Vec<(String, String)>,
    /// The folders and files `serve` said it follows (`watching PATH`), read with the
    /// `listening` lines.
    pub watching: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stdout: Mutex<mpsc::Receiver<String>>,
}

impl Server {
    /// Starts `switchboard serve ARGS...` and waits for `expect` listening lines.
    pub fn start(args: &[&str], expect: usize) -> Server {
        Server::start_env(args, expect, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_env(args: &[&str], expect: usize, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(binary());
        command.arg("serve").args(args).envs(env.iter().copied());
        Server::start_command(command, expect)
    }

    /// Starts `command` (a `switchboard serve`, perhaps under a wrapper that execs it)
    /// and waits for `expect` listening lines.
    pub fn start_command(mut command: Command, expect: usize) -> Server {
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting switchboard");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let stderr = stderr.clone();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listeners = Vec::new();
        let mut urls = Vec::new();
        let mut watching = Vec::new();
        while urls.len() < expect {
            let line = match rx.recv_timeout(START_PATIENCE) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("no `listening` line within {START_PATIENCE:?}; stderr:\n{}", stderr.lock().unwrap());
                }
            };
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["listening", name, url] => {
                    urls.push((name.to_string(), url.to_string()));
                    if let Some(addr) = url.strip_prefix("tcp://").or_else(|| url.strip_prefix("udp://")) {
                        listeners.push((name.to_string(), addr.parse().expect("listening address")));
                    } else {
                        assert!(url.starts_with("serial://") || url.starts_with("http://"), "unexpected listener {url}");
                    }
                }
                ["watching", path] => watching.push(path.to_string()),
                _ => panic!("unexpected stdout line {line:?}"),
            }
        }
        Server { child, listeners, urls, watching, stderr, stdout: Mutex::new(rx) }
    }

    /// The next `listening` line printed after start-up (a plugin added while running);
    /// `watching` lines on the way are skipped.
    pub fn next_listening(&self, limit: Duration) -> (String, SocketAddr) {
        let deadline = std::time::Instant::now() + limit;
        let stdout = self.stdout.lock().unwrap();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = stdout
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no new `listening` line within {limit:?}; stderr:\n{}", self.stderr()));
            match line.split(' ').collect::<Vec<_>>().as_slice() {
                ["watching", _] => continue,
                ["listening", name, url] => {
                    let addr = url.split("://").nth(1).expect("listening URL").parse().expect("listening address");
                    return (name.to_string(), addr);
                }
                _ => panic!("unexpected stdout line {line:?}"),
            }
        }
    }

    /// Whether a new `listening` line has been printed since the last one read (the line
    /// is consumed; `watching` lines are skipped).
    pub fn printed_listening(&self) -> bool {
        let stdout = self.stdout.lock().unwrap();
        while let Ok(line) = stdout.try_recv() {
            if !line.starts_with("watching ") {
                return true;
            }
        }
        false
    }

    /// The address of the `i`th listener.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.listeners[i].1
    }

    /// Everything the server logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The server's resident memory in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("reading /proc status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !self.stderr().contains(needle) {
            assert!(std::time::Instant::now() < deadline, "{needle:?} never logged:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `limit` for the server to exit; its exit code, or None if it runs on.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("polling the server") {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("polling the server").is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this test process's open-file limit to the hard limit (tests hold many sockets).
pub fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A copy of `src` named `NAME.wasm` in a per-process temp directory (plugin names are
/// file stems, so copies let one component serve under several names and settings).
pub fn copy_as(src: &std::path::Path, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-copies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::copy(src, &path).unwrap();
    path
}

/// Runs `switchboard ARGS...` to completion: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary()).args(args).stdin(Stdio::null()).output().expect("running switchboard");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Connects with read/write timeouts so a test fails rather than hangs.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

/// The seed echo client: sends each message and expects `Echo=>` + message back.
pub fn seed_echo_client(addr: SocketAddr, messages: &[&[u8]]) {
    seed_echo_client_on(connect(addr), messages);
}

/// [`seed_echo_client`] on a stream already connected.
pub fn seed_echo_client_on(mut s: TcpStream, messages: &[&[u8]]) {
    for m in messages {
        s.write_all(m).unwrap();
        let reply = read_n(&mut s, 6 + m.len());
        assert_eq!(reply, [b"Echo=>".as_slice(), m].concat(), "reply to {:?}", String::from_utf8_lossy(m));
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "unexpected trailing bytes {rest:?}");
}

/// A line-oriented client, like telnet or the seed's chat clients.
pub struct LineClient {
    /// The socket (for writes).
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Our address as the server sees it (`HOST:PORT`).
    pub addr: String,
}

impl LineClient {
    /// Connects.
    pub fn connect(addr: SocketAddr) -> LineClient {
        let stream = connect(addr);
        let reader = BufReader::new(stream.try_clone().unwrap());
        let addr = stream.local_addr().unwrap().to_string();
        LineClient { stream, reader, addr }
    }

    /// Wraps an already connected socket.
    pub fn from_stream(stream: TcpStream) -> LineClient {
        let reader = BufReader::new(stream.try_clone().unwrap());
        let addr = stream.local_addr().unwrap().to_string();
        LineClient { stream, reader, addr }
    }

    /// The next line, without its `\r\n`; panics on timeout or end of stream.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap_or_else(|e| panic!("{}: reading a line: {e}", self.addr));
        assert!(n > 0, "{}: connection closed while a line was expected", self.addr);
        assert!(line.ends_with("\r\n"), "{}: line not ended by CRLF: {line:?}", self.addr);
        line.truncate(line.len() - 2);
        line
    }

    /// Every line until the server closes the connection.
    pub fn lines_until_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return lines,
                Ok(_) => lines.push(line.trim_end_matches("\r\n").to_string()),
                Err(e) => panic!("{}: reading until the close: {e} (read {lines:?})", self.addr),
            }
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, data: &str) {
        self.stream.write_all(data.as_bytes()).unwrap();
    }

    /// Asserts the server closes the connection (after any bytes that were in flight).
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
    }
}

/// Echo clients that talk for as long as a test attacks the server beside them, each on
/// one connection, reconnecting after a failed exchange (which is counted).
pub struct EchoTalkers {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    exchanges: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    errors: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EchoTalkers {
    /// Starts `n` clients of the echo server at `addr`.
    pub fn start(addr: SocketAddr, n: usize) -> EchoTalkers {
        use std::sync::atomic::Ordering::Relaxed;
        let (done, exchanges, errors) = (Default::default(), Default::default(), Default::default());
        let mut talkers = EchoTalkers { done, exchanges, errors, threads: Vec::new() };
        for i in 0..n {
            let (done, exchanges, errors) = (talkers.done.clone(), talkers.exchanges.clone(), talkers.errors.clone());
            talkers.threads.push(std::thread::spawn(move || {
                let mut s = connect(addr);
                let msg = format!("{i:02}-0123456789abcdefghijklmnopqr");
                while !done.load(Relaxed) {
                    if echo_once(&mut s, msg.as_bytes()) {
                        exchanges.fetch_add(1, Relaxed);
                    } else {
                        errors.fetch_add(1, Relaxed);
                        s = connect(addr);
                    }
                }
            }));
        }
        talkers
    }

    /// Stops the clients; the exchanges they made and the errors they saw.
    pub fn stop(self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.done.store(true, Relaxed);
        for t in self.threads {
            t.join().expect("an echo client failed");
        }
        (self.exchanges.load(Relaxed), self.errors.load(Relaxed))
    }
}

/// One request/response with the echo plugin; true if it came back right.
pub fn echo_once(s: &mut TcpStream, msg: &[u8]) -> bool {
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut reply = vec![0u8; 6 + msg.len()];
    s.read_exact(&mut reply).is_ok() && reply[..6] == *b"Echo=>" && reply[6..] == *msg
}
