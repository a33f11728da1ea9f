//! Command line: the benchmark options, the `--quick` preset, and the hidden `baseline`
//! subcommand the bench uses to run its tokio servers in their own processes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// `switchboard-bench`: loopback benchmarks of switchboard against plain tokio servers
/// (and the seed's Python servers), all measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "switchboard-bench", version, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Internal: run one baseline server (used by the bench itself).
    #[command(subcommand)]
    pub command: Option<Internal>,
    /// The options of a benchmark run.
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// Options of a benchmark run.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The `switchboard` binary to measure (release build).
    #[arg(long, required = true)]
    pub switchboard: Option<PathBuf>,
    /// The folder holding echo.wasm, chat.wasm and getfile.wasm (and, when built, the twins
    /// echo-py.wasm and echo-js.wasm, which connrate measures beside echo.wasm).
    #[arg(long, required = true)]
    pub plugins: Option<PathBuf>,
    /// Run only these scenarios (comma-separated); default: all.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<Scenario>,
    /// Smaller, shorter defaults: 1 s per timed scenario, 2,000 idle connections, 200 chat
    /// clients, 10 fan-out rounds, a 128 MiB file, 50 stalled downloads of 16 MiB, 5 reload
    /// swaps. Explicit options still win.
    #[arg(long)]
    pub quick: bool,
    /// Seconds each timed scenario (rtt, stream, connrate, and admin's rtt and connrate) runs
    /// per server (in 5 rounds), and each of the two faults phases [default: 10].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Concurrent idle connections [default: 10000].
    #[arg(long, value_name = "N")]
    pub idle: Option<usize>,
    /// Seconds the idle connections stay idle before they are asked to answer [default: 2].
    #[arg(long, value_name = "SECS")]
    pub idle_hold: Option<f64>,
    /// Connected chat clients in the fan-out scenario [default: 1000].
    #[arg(long, value_name = "N")]
    pub chat_clients: Option<usize>,
    /// Broadcast rounds in the fan-out scenario [default: 20].
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,
    /// Size of the downloaded file, e.g. 1G, 256M, 4096 [default: 1G].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub getfile_size: Option<u64>,
    /// Stalled downloads (clients that request the file and never read) [default: 200].
    #[arg(long, value_name = "N")]
    pub stalled: Option<usize>,
    /// Size of the file the stalled clients request, e.g. 100M [default: 100M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub stalled_size: Option<u64>,
    /// Hot swaps timed in the reload scenario [default: 10].
    #[arg(long, value_name = "N")]
    pub swaps: Option<usize>,
    /// The test fixtures folder holding misbehave.wasm (`cargo xtask build` puts it in
    /// TARGET/fixtures; `cargo xtask bench` passes it). Needed by the faults scenario.
    #[arg(long, value_name = "DIR")]
    pub fixtures: Option<PathBuf>,
    /// Run the chosen scenarios N times and end with the spread of every ratio (min /
    /// median / max) and in how many runs each goal was met [default: 1].
    #[arg(long, value_name = "N")]
    pub repeat: Option<usize>,
    /// Skip the seed's Python servers even when python3 is installed.
    #[arg(long)]
    pub no_python: bool,
    /// Where the seed's Python clients/servers live [default: PLUGINS/../tests/clients].
    #[arg(long, value_name = "DIR")]
    pub seed_dir: Option<PathBuf>,
    /// Keep the servers' logs (in the bench's temporary folder) and print where they are.
    #[arg(long)]
    pub keep_logs: bool,
}

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Request/response latency and rate over persistent connections.
    Rtt,
    /// Bulk echo throughput.
    Stream,
    /// Connect + one message + close, per second.
    Connrate,
    /// Many idle connections: memory, and whether they all still answer.
    Idle,
    /// Chat broadcast to many clients.
    Fanout,
    /// The same broadcast with the clients split over two switchboard hosts on one
    /// redis-server, against one host with the in-process hub.
    FanoutHosts,
    /// Large file download.
    Getfile,
    /// Many getfile downloads that the clients never read: server memory per download.
    Stalled,
    /// Echo latency with and without misbehaving plugins beside it, in one switchboard.
    Faults,
    /// Hot reload: a rename into the plugins folder until the new version answers.
    Reload,
    /// rtt and connrate without the admin plane against with it, scraped every second.
    Admin,
    /// TLS: request/response over TLS connections, handshakes per second and bulk echo,
    /// against a plain tokio-rustls echo.
    Tls,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 12] = [
        Self::Rtt,
        Self::Stream,
        Self::Connrate,
        Self::Idle,
        Self::Fanout,
        Self::FanoutHosts,
        Self::Getfile,
        Self::Stalled,
        Self::Faults,
        Self::Reload,
        Self::Admin,
        Self::Tls,
    ];
    /// Run order: connrate last, because the tens of thousands of client sockets it leaves
    /// in TIME_WAIT (for 60 s) make later connects slower (faults and reload connect a lot
    /// too, so they run before it); admin after it, as it runs connrate too (its two sides
    /// take turns, so both see the same TIME_WAIT backlog); tls before them, as its
    /// handshakes connect a lot too.
    pub const RUN_ORDER: [Scenario; 12] = [
        Self::Rtt,
        Self::Stream,
        Self::Idle,
        Self::Fanout,
        Self::FanoutHosts,
        Self::Getfile,
        Self::Stalled,
        Self::Faults,
        Self::Reload,
        Self::Tls,
        Self::Connrate,
        Self::Admin,
    ];

    /// Position in the table.
    pub fn table_position(self) -> usize {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(usize::MAX)
    }

    /// The scenario called `name`.
    pub fn named(name: &str) -> Option<Scenario> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scenario's name, as on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rtt => "rtt",
            Self::Stream => "stream",
            Self::Connrate => "connrate",
            Self::Idle => "idle",
            Self::Fanout => "fanout",
            Self::FanoutHosts => "fanout-hosts",
            Self::Getfile => "getfile",
            Self::Stalled => "stalled",
            Self::Faults => "faults",
            Self::Reload => "reload",
            Self::Admin => "admin",
            Self::Tls => "tls",
        }
    }
}

/// Internal subcommands.
#[derive(Debug, Subcommand)]
pub enum Internal {
    /// Serve one plain tokio baseline on 127.0.0.1:0 and print `listening NAME tcp://ADDR`.
    #[command(hide = true)]
    Baseline(BaselineArgs),
}

/// Which baseline server to run, and how.
#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    /// The server.
    #[arg(value_enum)]
    pub kind: BaselineKind,
    /// Echo: the reply prefix (empty = pure RFC 862 echo).
    #[arg(long, default_value = "Echo=>")]
    pub prefix: String,
    /// Getfile: the directory files are served from.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Tls-echo: the certificate chain (PEM).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Tls-echo: its key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

/// The plain tokio baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BaselineKind {
    /// Echo, replying PREFIX + each chunk read.
    Echo,
    /// Broadcast chat, plugins/chat's wire format.
    Chat,
    /// getfile: `name\n` in, the file's bytes out (through a buffer, `copy_buf`), close.
    Getfile,
    /// getfile's protocol, the bytes sent by the kernel with `sendfile(2)`.
    Sendfile,
    /// Echo over TLS (tokio-rustls on ring, TLS 1.3), replying PREFIX + each chunk read.
    TlsEcho,
}

/// A fully resolved benchmark configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `switchboard` binary.
    pub switchboard: PathBuf,
    /// The folder with the built plugins.
    pub plugins: PathBuf,
    /// The seed's Python programs (getfile.py); `None` when python3 is skipped or absent.
    pub seed_dir: Option<PathBuf>,
    /// Scenarios to run, in run order.
    pub scenarios: Vec<Scenario>,
    /// Length of each timed scenario, per server.
    pub duration: Duration,
    /// Idle connections to hold.
    pub idle: usize,
    /// How long they stay idle.
    pub idle_hold: Duration,
    /// Chat clients in the fan-out scenario.
    pub chat_clients: usize,
    /// Fan-out rounds.
    pub rounds: usize,
    /// Bytes in the getfile download.
    pub getfile_size: u64,
    /// Stalled downloads held at once.
    pub stalled: usize,
    /// Bytes in the file the stalled clients request.
    pub stalled_size: u64,
    /// Hot swaps timed in the reload scenario.
    pub swaps: usize,
    /// The test fixtures folder (misbehave.wasm), when given.
    pub fixtures: Option<PathBuf>,
    /// Keep the server logs.
    pub keep_logs: bool,
    /// How many times the scenarios run.
    pub repeat: usize,
}

impl BenchArgs {
    /// Applies the defaults (full or `--quick`) and checks the paths.
    pub fn resolve(self) -> Result<Config> {
        let q = self.quick;
        let switchboard = self.switchboard.context("--switchboard is required")?;
        let plugins = self.plugins.context("--plugins is required")?;
        if !switchboard.is_file() {
            bail!("{}: no such file (build it with `cargo xtask build`)", switchboard.display());
        }
        let seed_dir =
            if self.no_python { None } else { Some(self.seed_dir.unwrap_or_else(|| plugins.join("..").join("tests").join("clients"))) };
        let secs = |v: Option<f64>, full: f64, quick: f64| -> Result<Duration> {
            let s = v.unwrap_or(if q { quick } else { full });
            Duration::try_from_secs_f64(s).with_context(|| format!("bad duration {s}"))
        };
        let scenarios = Scenario::RUN_ORDER.into_iter().filter(|s| self.only.is_empty() || self.only.contains(s)).collect();
        let config = Config {
            switchboard,
            plugins,
            seed_dir,
            scenarios,
            duration: secs(self.duration, 10.0, 1.0)?,
            idle: self.idle.unwrap_or(if q { 2_000 } else { 10_000 }),
            idle_hold: secs(self.idle_hold, 2.0, 1.0)?,
            chat_clients: self.chat_clients.unwrap_or(if q { 200 } else { 1_000 }),
            rounds: self.rounds.unwrap_or(if q { 10 } else { 20 }).max(1),
            getfile_size: self.getfile_size.unwrap_or(if q { 128 << 20 } else { 1 << 30 }),
            stalled: self.stalled.unwrap_or(if q { 50 } else { 200 }).max(1),
            stalled_size: self.stalled_size.unwrap_or(if q { 16 << 20 } else { 100 << 20 }),
            swaps: self.swaps.unwrap_or(if q { 5 } else { 10 }).max(1),
            fixtures: self.fixtures,
            keep_logs: self.keep_logs,
            repeat: self.repeat.unwrap_or(1).max(1),
        };
        if config.chat_clients < 2 {
            bail!("--chat-clients needs at least 2 clients");
        }
        Ok(config)
    }
}

/// Parses `1G`, `256M`, `64K` (binary units) or a plain byte count.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 10),
        Some((i, 'm' | 'M')) => (&s[..i], 20),
        Some((i, 'g' | 'G')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n: u64 = digits.parse().map_err(|e| format!("{s:?}: {e}"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1T").is_err());
    }

    #[test]
    fn quick_is_smaller_and_flags_win() {
        let cli = Cli::parse_from(["b", "--switchboard", "/bin/sh", "--plugins", "p", "--quick", "--idle", "50"]);
        let cfg = cli.bench.resolve().unwrap();
        assert_eq!(cfg.idle, 50);
        assert_eq!(cfg.chat_clients, 200);
        assert_eq!(cfg.duration, Duration::from_secs(1));
        assert_eq!(cfg.swaps, 5);
        assert_eq!((cfg.stalled, cfg.stalled_size), (50, 16 << 20));
        assert_eq!(cfg.fixtures, None);
    }

    #[test]
    fn every_scenario_runs_once_and_has_its_name() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::RUN_ORDER.iter().filter(|r| **r == s).count(), 1, "{s:?}");
            assert_eq!(Scenario::named(s.name()), Some(s));
            assert_eq!(Scenario::from_str(s.name(), false), Ok(s));
        }
        let cli = Cli::parse_from(["b", "--switchboard", "/bin/sh", "--plugins", "p", "--only", "reload,faults", "--fixtures", "f"]);
        let cfg = cli.bench.resolve().unwrap();
        assert_eq!(cfg.scenarios, [Scenario::Faults, Scenario::Reload]);
        assert_eq!(cfg.fixtures, Some(PathBuf::from("f")));
        assert_eq!(cfg.swaps, 10);
    }

    #[test]
    fn an_empty_prefix_is_allowed() {
        let cli = Cli::parse_from(["b", "baseline", "echo", "--prefix="]);
        let Some(Internal::Baseline(args)) = cli.command else { panic!("no baseline") };
        assert_eq!(args.prefix, "");
    }
}
