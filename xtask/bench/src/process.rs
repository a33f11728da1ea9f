//! Server processes: starting switchboard, the tokio baselines and the seed's Python
//! servers as subprocesses, finding their address from the `listening NAME tcp://ADDR`
//! line, reading their RSS, stopping them, and scanning their logs for trouble.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::{BaselineKind, Config};

/// How long a server may take to print its `listening` line (switchboard may compile).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines kept as samples of trouble, per server.
const LOG_SAMPLES: usize = 3;
/// The seed echo server, thread per client (xtask/bench/echo-server.py).
const SEED_ECHO_PY: &str = include_str!("../echo-server.py");

/// Which kind of server a measurement is about: a column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The plain tokio baseline.
    Tokio,
    /// switchboard with a plugin.
    Switchboard,
    /// The seed's Python server.
    Seed,
    /// switchboard as its own baseline (e.g. without the admin plane): the baseline column.
    Reference,
    /// switchboard with another language's twin of the plugin (e.g. `echo-py.wasm` beside
    /// `echo.wasm`), measured beside it; the label names the twin.
    Twin(&'static str),
}

impl Side {
    /// Label in progress lines and notes.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Switchboard => "switchboard",
            Self::Seed => "python seed",
            Self::Reference => "baseline switchboard",
            Self::Twin(label) => label,
        }
    }
}

/// A server to start: the command line and the side it stands for.
pub struct ServerSpec {
    /// The table column it belongs to.
    pub side: Side,
    /// Whether warnings and errors in its log are the point of the scenario (a note still
    /// counts them, saying so).
    pub expects_log_trouble: bool,
    /// The command that starts it.
    command: Command,
    /// Short description for progress lines.
    describe: String,
    /// `listening` lines to wait for before it counts as started.
    listeners: usize,
    /// Its name in progress lines, notes and log file names, when its side's label is not
    /// enough (two servers of one side in one scenario).
    label: Option<&'static str>,
}

impl ServerSpec {
    fn new(side: Side, command: Command, describe: String) -> ServerSpec {
        ServerSpec { side, expects_log_trouble: false, command, describe: describe.trim_end().to_string(), listeners: 1, label: None }
    }

    /// Names it `label` (rather than its side's label) in progress lines, notes and logs.
    pub fn labelled(mut self, label: &'static str) -> ServerSpec {
        self.label = Some(label);
        self
    }

    /// Its name in progress lines, notes and log file names.
    pub fn label(&self) -> &'static str {
        self.label.unwrap_or(self.side.label())
    }

    /// Makes it the baseline column of its rows (switchboard compared with itself).
    pub fn reference(mut self) -> ServerSpec {
        self.side = Side::Reference;
        self
    }

    /// Makes it the twin `label` (another language's build of the plugin): its figures are
    /// kept apart from the main switchboard server's (see `Sides::twin`).
    pub fn twin(mut self, label: &'static str) -> ServerSpec {
        self.side = Side::Twin(label);
        self
    }

    /// Marks the warnings and errors this server will log as expected.
    pub fn expecting_log_trouble(mut self) -> ServerSpec {
        self.expects_log_trouble = true;
        self
    }
}

/// Builds the server commands from the configuration.
pub struct Launcher {
    switchboard: PathBuf,
    /// This binary, for the `baseline` subcommand.
    exe: PathBuf,
    plugins: PathBuf,
    /// python3 and the seed directory, when the Python servers are in play.
    seed: Option<PathBuf>,
    log_dir: PathBuf,
}

impl Launcher {
    /// A launcher writing server logs under `log_dir`; checks for python3 when the seed
    /// servers are wanted, and says so on stderr when they are skipped.
    pub fn new(config: &Config, log_dir: &Path) -> Result<Launcher> {
        let exe = std::env::current_exe().context("finding the bench binary")?;
        let seed = config.seed_dir.clone().and_then(|dir| {
            let found = std::process::Command::new("python3")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                eprintln!("bench: python3 not found: skipping the seed's Python servers");
                return None;
            }
            if !dir.join("getfile.py").is_file() {
                eprintln!("bench: {} has no getfile.py: skipping the seed's getfile server", dir.display());
            }
            Some(dir)
        });
        Ok(Launcher { switchboard: config.switchboard.clone(), exe, plugins: config.plugins.clone(), seed, log_dir: log_dir.to_path_buf() })
    }

    /// Whether the seed's Python servers take part.
    pub fn has_python(&self) -> bool {
        self.seed.is_some()
    }

    /// `switchboard serve --plugin PLUGINS/NAME.wasm@127.0.0.1:0 EXTRA...`
    pub fn switchboard(&self, plugin: &str, extra: &[&str]) -> ServerSpec {
        let wasm = self.plugins.join(format!("{plugin}.wasm"));
        let mut command = Command::new(&self.switchboard);
        command.arg("serve").arg("--plugin").arg(format!("{}@127.0.0.1:0", wasm.display())).args(extra);
        ServerSpec::new(Side::Switchboard, command, format!("switchboard {plugin}.wasm {}", extra.join(" ")))
    }

    /// `switchboard serve --plugin PLUGINS/NAME.wasm@tls:127.0.0.1:0 --tls NAME=CERT,KEY EXTRA...`.
    pub fn switchboard_tls(&self, plugin: &str, cert: &Path, key: &Path, extra: &[&str]) -> ServerSpec {
        let wasm = self.plugins.join(format!("{plugin}.wasm"));
        let mut command = Command::new(&self.switchboard);
        let tls = format!("{plugin}={},{}", cert.display(), key.display());
        command.arg("serve").arg("--plugin").arg(format!("{}@tls:127.0.0.1:0", wasm.display())).arg("--tls").arg(&tls).args(extra);
        ServerSpec::new(Side::Switchboard, command, format!("switchboard {plugin}.wasm@tls: --tls {plugin}=CERT,KEY {}", extra.join(" ")))
    }

    /// `switchboard serve --plugin PLUGINS/NAME.wasm@127.0.0.1:0 --admin 127.0.0.1:0`;
    /// started once both `listening` lines are out.
    pub fn switchboard_with_admin(&self, plugin: &str) -> ServerSpec {
        let mut spec = self.switchboard(plugin, &["--admin", "127.0.0.1:0"]);
        spec.listeners = 2;
        spec
    }

    /// The path of the built plugin `NAME.wasm`.
    pub fn plugin_path(&self, name: &str) -> PathBuf {
        self.plugins.join(format!("{name}.wasm"))
    }

    /// `switchboard serve --plugin PATH@127.0.0.1:0 ... EXTRA...`: several plugins in one
    /// process; started once all of them print their `listening` line.
    pub fn switchboard_many(&self, wasm: &[PathBuf], extra: &[String]) -> ServerSpec {
        let mut command = Command::new(&self.switchboard);
        command.arg("serve");
        for path in wasm {
            command.arg("--plugin").arg(format!("{}@127.0.0.1:0", path.display()));
        }
        command.args(extra);
        let names: Vec<String> = wasm.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
        let mut spec = ServerSpec::new(Side::Switchboard, command, format!("switchboard {} {}", names.join(" "), extra.join(" ")));
        spec.listeners = wasm.len().max(1);
        spec
    }

    /// `switchboard serve --plugins DIR`, started once `listeners` `listening` lines are out
    /// (one per listener of the plugins already in the folder).
    pub fn switchboard_folder(&self, dir: &Path, listeners: usize) -> ServerSpec {
        let mut command = Command::new(&self.switchboard);
        command.arg("serve").arg("--plugins").arg(dir);
        let mut spec = ServerSpec::new(Side::Switchboard, command, format!("switchboard serve --plugins {}", dir.display()));
        spec.listeners = listeners.max(1);
        spec
    }

    /// This binary's hidden `baseline KIND ARGS...` subcommand.
    pub fn tokio(&self, kind: BaselineKind, args: &[&str]) -> ServerSpec {
        let mut command = Command::new(&self.exe);
        // As clap spells it on the command line (`tls-echo`).
        let kind_name = clap::ValueEnum::to_possible_value(&kind).map_or_else(String::new, |v| v.get_name().to_string());
        command.arg("baseline").arg(&kind_name).args(args);
        ServerSpec::new(Side::Tokio, command, format!("tokio {kind_name} {}", args.join(" ")))
    }

    /// The seed's thread-per-client echo server (`Echo=>` + chunk), if python3 is here.
    pub fn seed_echo(&self) -> Option<ServerSpec> {
        self.seed.as_ref()?;
        let mut command = Command::new("python3");
        command.arg("-c").arg(SEED_ECHO_PY).args(["-host", "127.0.0.1", "-port", "0"]);
        Some(ServerSpec::new(Side::Seed, command, "python3 echo-server.py (thread per client)".into()))
    }

    /// The seed's getfile.py server, serving `dir`, if python3 and getfile.py are here.
    pub fn seed_getfile(&self, dir: &Path) -> Option<ServerSpec> {
        let script = self.seed.as_ref()?.join("getfile.py");
        if !script.is_file() {
            return None;
        }
        let script = script.canonicalize().unwrap_or(script);
        let mut command = Command::new("python3");
        command.arg(&script).args(["-mode", "server", "-host", "127.0.0.1", "-port", "0"]).current_dir(dir);
        Some(ServerSpec::new(Side::Seed, command, "python3 getfile.py -mode server (1 KiB blocks)".into()))
    }

    /// Starts `spec` and waits for its `listening` line(s).
    pub async fn start(&self, scenario: &str, mut spec: ServerSpec) -> Result<Server> {
        let label = spec.label();
        let log = self.log_dir.join(format!("{scenario}-{}.log", label.replace(' ', "-")));
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        eprintln!("bench: [{scenario}] starting {}", spec.describe);
        let mut child = spec
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", spec.describe))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut listeners = Vec::with_capacity(spec.listeners);
        while listeners.len() < spec.listeners {
            let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => bail!("{} exited before listening; see {}", spec.describe, tail(&log)),
                Ok(Err(e)) => bail!("reading the stdout of {}: {e}", spec.describe),
                Err(_) => bail!(
                    "{} printed {} of {} `listening` line(s) within {START_TIMEOUT:?}",
                    spec.describe,
                    listeners.len(),
                    spec.listeners
                ),
            };
            // `serve --plugins DIR` also says which folder it follows.
            if line.starts_with("watching ") {
                continue;
            }
            listeners.push(parse_listening(&line).with_context(|| format!("{}: unexpected line {line:?}", spec.describe))?);
        }
        // The first plugin's listener (the admin endpoint is no plugin).
        let addr = listeners.iter().find(|(name, _)| name != "admin").unwrap_or(&listeners[0]).1;
        // Keep draining stdout (the Python servers print a line per connection) into the log.
        let log_path = log.clone();
        tokio::spawn(async move {
            let Ok(mut file) = tokio::fs::OpenOptions::new().append(true).open(&log_path).await else { return };
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = file.write_all(format!("stdout: {line}\n").as_bytes()).await;
            }
        });
        Ok(Server { side: spec.side, label, child, addr, listeners, log })
    }
}

/// The name and address in `listening NAME tcp://ADDR` (or `listening admin http://ADDR`).
fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let mut words = line.split_whitespace();
    (words.next()? == "listening").then_some(())?;
    let name = words.next()?.to_string();
    let url = words.next()?;
    let addr = ["tcp://", "tls://", "http://"].iter().find_map(|scheme| url.strip_prefix(scheme))?;
    Some((name, addr.parse().ok()?))
}

/// The last lines of a log, for error messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() { format!("{} (empty)", log.display()) } else { format!("{}: {tail}", log.display()) }
}

/// A running server process, killed when dropped.
pub struct Server {
    /// Which column it stands for.
    pub side: Side,
    /// Its name in progress lines and notes (its side's label unless the spec named it).
    pub label: &'static str,
    child: Child,
    /// Where it listens (its first `listening` line).
    pub addr: SocketAddr,
    /// Every `listening` line it printed before it counted as started: (name, address).
    pub listeners: Vec<(String, SocketAddr)>,
    log: PathBuf,
}

/// What a server's log said that deserves attention.
#[derive(Debug, Default)]
pub struct LogSummary {
    /// Lines that look like warnings or errors.
    pub troubled: usize,
    /// The first few of them.
    pub samples: Vec<String>,
}

impl Server {
    /// Resident set size of the server process in KiB (`VmRSS` in /proc/PID/status).
    pub fn rss_kib(&self) -> Result<u64> {
        let pid = self.child.id().context("the server has exited")?;
        proc_status_kib(pid, "VmRSS:")
    }

    /// CPU time the server process has used so far, all threads, in nanoseconds (the first
    /// field of every `/proc/PID/task/TID/schedstat`: nanosecond resolution, unlike the
    /// clock ticks of `/proc/PID/stat`).
    pub fn cpu_ns(&self) -> Result<u64> {
        let pid = self.child.id().context("the server has exited")?;
        let tasks = format!("/proc/{pid}/task");
        let mut total = 0;
        for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
            // A thread may end between the listing and the read: it no longer counts.
            let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else { continue };
            total += stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
        }
        Ok(total)
    }

    /// The address plugin `name` listens on, from its `listening` line.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// The server's log so far (stderr, and stdout lines after the `listening` ones),
    /// ANSI colours removed.
    pub fn log_text(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&bytes).lines().map(strip_ansi).collect::<Vec<_>>().join("\n")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the server, waits for it, and scans its log for warnings and errors.
    pub async fn stop(mut self) -> LogSummary {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        scan_log(&self.log)
    }
}

/// A `kB` field of /proc/PID/status.
fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = line[field.len()..].trim().trim_end_matches("kB").trim();
    kib.parse().with_context(|| format!("parsing {line:?}"))
}

/// Counts the lines of a log that look like trouble (warnings, errors, panics, Python
/// tracebacks), ANSI colours removed.
fn scan_log(log: &Path) -> LogSummary {
    let bytes = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let mut summary = LogSummary::default();
    for line in text.lines() {
        let plain = strip_ansi(line);
        let troubled = plain.split_whitespace().take(3).any(|w| w == "WARN" || w == "ERROR")
            || ["panicked", "Traceback", "Error downloading", "connection error", "accept failed"].iter().any(|p| plain.contains(p));
        if troubled {
            summary.troubled += 1;
            if summary.samples.len() < LOG_SAMPLES {
                summary.samples.push(plain.chars().take(300).collect());
            }
        }
    }
    summary
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The kernel's `TcpExt: ListenOverflows` counter (connections dropped because a listen
/// queue was full; the client retries its SYN after 1 s). System-wide.
pub fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (servers started later
/// inherit it) and returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_give_the_address() {
        assert_eq!(parse_listening("listening echo tcp://127.0.0.1:4000"), Some(("echo".into(), "127.0.0.1:4000".parse().unwrap())));
        assert_eq!(parse_listening("listening getfile.py tcp://127.0.0.1:5"), Some(("getfile.py".into(), "127.0.0.1:5".parse().unwrap())));
        assert_eq!(parse_listening("listening echo tls://127.0.0.1:4443"), Some(("echo".into(), "127.0.0.1:4443".parse().unwrap())));
        assert_eq!(parse_listening("listening echo serial:///dev/pts/3"), None);
        assert_eq!(parse_listening("hello"), None);
        assert_eq!(parse_listening("listening admin http://127.0.0.1:9"), Some(("admin".into(), "127.0.0.1:9".parse().unwrap())));
    }

    #[test]
    fn ansi_colours_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[33m WARN\u{1b}[0m x"), " WARN x");
    }

    #[test]
    fn the_listen_overflow_counter_is_readable() {
        assert!(listen_overflows().is_some());
    }

    #[test]
    fn our_own_rss_is_readable() {
        assert!(proc_status_kib(std::process::id(), "VmRSS:").unwrap() > 0);
    }
}
