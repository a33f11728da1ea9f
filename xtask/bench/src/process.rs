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
}

impl Side {
    /// Label in progress lines and notes.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Switchboard => "switchboard",
            Self::Seed => "python seed",
        }
    }
}

/// A server to start: the command line and the side it stands for.
pub struct ServerSpec {
    /// The table column it belongs to.
    pub side: Side,
    /// The command that starts it.
    command: Command,
    /// Short description for progress lines.
    describe: String,
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
        let describe = format!("switchboard {plugin}.wasm {}", extra.join(" "));
        ServerSpec { side: Side::Switchboard, command, describe: describe.trim_end().to_string() }
    }

    /// This binary's hidden `baseline KIND ARGS...` subcommand.
    pub fn tokio(&self, kind: BaselineKind, args: &[&str]) -> ServerSpec {
        let mut command = Command::new(&self.exe);
        let kind_name = format!("{kind:?}").to_lowercase();
        command.arg("baseline").arg(&kind_name).args(args);
        ServerSpec { side: Side::Tokio, command, describe: format!("tokio {kind_name} {}", args.join(" ")).trim_end().to_string() }
    }

    /// The seed's thread-per-client echo server (`Echo=>` + chunk), if python3 is here.
    pub fn seed_echo(&self) -> Option<ServerSpec> {
        self.seed.as_ref()?;
        let mut command = Command::new("python3");
        command.arg("-c").arg(SEED_ECHO_PY).args(["-host", "127.0.0.1", "-port", "0"]);
        Some(ServerSpec { side: Side::Seed, command, describe: "python3 echo-server.py (thread per client)".into() })
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
        Some(ServerSpec { side: Side::Seed, command, describe: "python3 getfile.py -mode server (1 KiB blocks)".into() })
    }

    /// Starts `spec` and waits for its `listening` line.
    pub async fn start(&self, scenario: &str, mut spec: ServerSpec) -> Result<Server> {
        let log = self.log_dir.join(format!("{scenario}-{}.log", spec.side.label().replace(' ', "-")));
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
        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => bail!("{} exited before listening; see {}", spec.describe, tail(&log)),
            Ok(Err(e)) => bail!("reading the stdout of {}: {e}", spec.describe),
            Err(_) => bail!("{} printed no `listening` line within {START_TIMEOUT:?}", spec.describe),
        };
        let addr = parse_listening(&line).with_context(|| format!("{}: unexpected first line {line:?}", spec.describe))?;
        // Keep draining stdout (the Python servers print a line per connection) into the log.
        let log_path = log.clone();
        tokio::spawn(async move {
            let Ok(mut file) = tokio::fs::OpenOptions::new().append(true).open(&log_path).await else { return };
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = file.write_all(format!("stdout: {line}\n").as_bytes()).await;
            }
        });
        Ok(Server { side: spec.side, child, addr, log })
    }
}

/// The address in `listening NAME tcp://ADDR`.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let mut words = line.split_whitespace();
    (words.next()? == "listening").then_some(())?;
    words.next()?;
    words.next()?.strip_prefix("tcp://")?.parse().ok()
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
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
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
        assert_eq!(parse_listening("listening echo tcp://127.0.0.1:4000"), Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(parse_listening("listening getfile.py tcp://127.0.0.1:5"), Some("127.0.0.1:5".parse().unwrap()));
        assert_eq!(parse_listening("listening echo serial:///dev/pts/3"), None);
        assert_eq!(parse_listening("hello"), None);
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
