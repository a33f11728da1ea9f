//! The six scenarios. Each starts its servers one at a time (tokio baseline, switchboard,
//! the seed's Python server where there is one), drives every one of them with the same
//! load generator, stops it, and turns the figures into table rows.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli::{BaselineKind, Config, Scenario};
use crate::load::{self, ChatClients, Errors, Exchange, Latencies, LoopOutcome};
use crate::process::{Launcher, Server, ServerSpec, Side, listen_overflows, raise_nofile_limit};
use crate::report::{Goal, Report, Row, Unit, figure, thousands};

/// Connections in the rtt scenario.
const RTT_CONNS: usize = 8;
/// Workers in the connrate scenario.
const CONNRATE_WORKERS: usize = 8;
/// Request size in rtt, connrate and idle.
const MESSAGE: usize = 32;
/// The echo plugin's default prefix.
const PREFIX: &[u8] = b"Echo=>";
/// Connections and write size in the stream scenario.
const STREAM_CONNS: usize = 4;
const STREAM_WRITE: usize = 64 << 10;
/// Idle scenario: connects / exchanges in flight at once.
const IDLE_CONNECTS_IN_FLIGHT: usize = 64;
const IDLE_ANSWERS_IN_FLIGHT: usize = 256;
/// File descriptors kept free for everything but the idle connections.
const FD_MARGIN: u64 = 512;
/// The goals' idle connection count.
const IDLE_GOAL: usize = 10_000;
/// Longest wait for the chat join notices to arrive everywhere.
const JOIN_SETTLE: Duration = Duration::from_secs(60);
/// Pause between fan-out rounds.
const ROUND_PAUSE: Duration = Duration::from_millis(20);
/// The downloaded file's name.
const GETFILE_NAME: &str = "bench.bin";
/// Belt and braces: no server is measured for longer than this.
const MEASURE_LIMIT: Duration = Duration::from_secs(600);

/// Runs the configured scenarios and returns the report.
pub async fn run(config: Config) -> Result<Report> {
    let nofile = raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    eprintln!("bench: RLIMIT_NOFILE = {nofile} (the servers inherit it)");
    let work = WorkDir::create(config.keep_logs)?;
    let launcher = Launcher::new(&config, work.path())?;
    let mut report = Report { heading: heading(&config), ..Default::default() };
    if !launcher.has_python() {
        let why = if config.seed_dir.is_some() { "python3 not found" } else { "--no-python" };
        report.note(format!("{why}: the seed's Python servers were skipped"));
    }
    let bench = Bench { config: &config, launcher: &launcher, nofile };
    for scenario in &config.scenarios {
        let rows = match scenario {
            Scenario::Rtt => bench.rtt(&mut report).await,
            Scenario::Stream => bench.stream(&mut report).await,
            Scenario::Connrate => bench.connrate(&mut report).await,
            Scenario::Idle => bench.idle(&mut report).await,
            Scenario::Fanout => bench.fanout(&mut report).await,
            Scenario::Getfile => bench.getfile(&mut report, work.path()).await?,
        };
        report.rows.extend(rows);
    }
    report.rows.sort_by_key(|row| Scenario::named(row.scenario).map_or(usize::MAX, Scenario::table_position));
    Ok(report)
}

/// The lines above the table: machine and settings.
fn heading(config: &Config) -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    vec![
        format!(
            "switchboard-bench: loopback, clients and server on the same {cores}-core machine (Linux {}; load average {} at the start).",
            kernel.trim(),
            load.join(" ")
        ),
        format!(
            "rtt/stream/connrate {:.1} s per server; idle {} connections; fanout {} clients × {} rounds; getfile {} MiB.",
            config.duration.as_secs_f64(),
            thousands(config.idle as f64),
            thousands(config.chat_clients as f64),
            config.rounds,
            config.getfile_size >> 20
        ),
        "Every server runs in its own process, measured one after the other in this run; ratios are switchboard / baseline.".into(),
    ]
}

/// One figure per server side.
struct Sides<M> {
    tokio: Option<M>,
    switchboard: Option<M>,
    seed: Option<M>,
}

impl<M> Sides<M> {
    /// A table row with `value` of each side.
    fn row(&self, scenario: Scenario, metric: impl Into<String>, unit: Unit, value: impl Fn(&M) -> Option<f64>) -> Row {
        let get = |m: &Option<M>| m.as_ref().and_then(&value);
        Row::new(scenario.name(), metric, unit, get(&self.tokio), get(&self.switchboard)).seed(get(&self.seed))
    }
}

/// What the scenarios share: the configuration and the launcher.
struct Bench<'a> {
    config: &'a Config,
    launcher: &'a Launcher,
    nofile: u64,
}

impl Bench<'_> {
    /// Starts each server in turn, runs `measure` against it, stops it. Failures and
    /// anything odd in the server's log become notes; that side's figure is then missing.
    async fn measure_all<M>(
        &self,
        report: &mut Report,
        scenario: Scenario,
        specs: Vec<ServerSpec>,
        mut measure: impl AsyncFnMut(&Server, &mut Vec<String>) -> Result<M>,
    ) -> Sides<M> {
        let mut sides = Sides { tokio: None, switchboard: None, seed: None };
        for spec in specs {
            let side = spec.side;
            let tag = format!("{}/{}", scenario.name(), side.label());
            let mut server = match self.launcher.start(scenario.name(), spec).await {
                Ok(server) => server,
                Err(e) => {
                    report.note(format!("{tag}: could not start: {e:#}"));
                    continue;
                }
            };
            let mut notes = Vec::new();
            let overflows = listen_overflows();
            let result = tokio::time::timeout(MEASURE_LIMIT, measure(&server, &mut notes)).await;
            if let (Some(before), Some(after)) = (overflows, listen_overflows())
                && after > before
            {
                notes.push(format!(
                    "{} connection(s) dropped by a full accept queue (TcpExtListenOverflows, system-wide; each costs a 1 s SYN retry)",
                    after - before
                ));
            }
            if !server.alive() {
                notes.push("the server process exited during the scenario".into());
            }
            let log = server.stop().await;
            if log.troubled > 0 {
                notes.push(format!("{} warning/error line(s) in the server log, e.g. {:?}", log.troubled, log.samples));
            }
            let value = match result {
                Ok(Ok(m)) => Some(m),
                Ok(Err(e)) => {
                    notes.push(format!("failed: {e:#}"));
                    None
                }
                Err(_) => {
                    notes.push(format!("gave up after {MEASURE_LIMIT:?}"));
                    None
                }
            };
            for note in notes {
                report.note(format!("{tag}: {note}"));
            }
            match side {
                Side::Tokio => sides.tokio = value,
                Side::Switchboard => sides.switchboard = value,
                Side::Seed => sides.seed = value,
            }
        }
        sides
    }

    /// The `Echo=>` echo servers: the tokio baseline and switchboard's echo.wasm.
    fn echo_servers(&self) -> Vec<ServerSpec> {
        vec![self.launcher.tokio(BaselineKind::Echo, &["--prefix=Echo=>"]), self.launcher.switchboard("echo", &[])]
    }

    /// rtt: 8 connections × 32-byte request/response for the configured duration.
    async fn rtt(&self, report: &mut Report) -> Vec<Row> {
        let mut specs = self.echo_servers();
        specs.extend(self.launcher.seed_echo());
        let exchange = Exchange::new(PREFIX, MESSAGE);
        let duration = self.config.duration;
        let sides = self
            .measure_all(report, Scenario::Rtt, specs, async |server, notes| {
                let outcome = load::rtt(server.addr, RTT_CONNS, duration, exchange.clone()).await;
                closed_loop_result(server, "msgs/s", outcome, notes)
            })
            .await;
        let s = Scenario::Rtt;
        vec![
            sides.row(s, "msgs/s, 8 conns × 32 B", Unit::Rate("msgs/s"), |o| Some(o.rate())).goal(Goal::RatioAtLeast(0.85)),
            sides.row(s, "p50 round trip", Unit::Seconds, |o| secs(o.latencies.percentile(50.0))),
            sides.row(s, "p99 round trip", Unit::Seconds, |o| secs(o.latencies.percentile(99.0))).goal(Goal::RatioAtMost(1.5)),
        ]
    }

    /// stream: 4 connections × 64 KiB writes, pure echo, reads concurrent.
    async fn stream(&self, report: &mut Report) -> Vec<Row> {
        let specs =
            vec![self.launcher.tokio(BaselineKind::Echo, &["--prefix="]), self.launcher.switchboard("echo", &["--set", "echo.PREFIX="])];
        let duration = self.config.duration;
        let sides = self
            .measure_all(report, Scenario::Stream, specs, async |server, notes| {
                let outcome = load::stream_echo(server.addr, STREAM_CONNS, STREAM_WRITE, duration).await;
                note_errors(notes, &outcome.errors);
                if outcome.received == 0 {
                    bail!("nothing came back: {}", outcome.errors.describe());
                }
                progress(
                    server,
                    &format!("{} (sent {} MB)", figure(Unit::MegabytesPerSec, outcome.mb_per_sec()), outcome.sent / 1_000_000),
                );
                Ok(outcome)
            })
            .await;
        vec![
            sides
                .row(Scenario::Stream, "MB/s echoed, 4 conns × 64 KiB", Unit::MegabytesPerSec, |o| Some(o.mb_per_sec()))
                .goal(Goal::RatioAtLeast(0.75)),
        ]
    }

    /// connrate: 8 workers doing connect + one exchange + close.
    async fn connrate(&self, report: &mut Report) -> Vec<Row> {
        let specs = self.echo_servers();
        let exchange = Exchange::new(PREFIX, MESSAGE);
        let duration = self.config.duration;
        let sides = self
            .measure_all(report, Scenario::Connrate, specs, async |server, notes| {
                let outcome = load::connrate(server.addr, CONNRATE_WORKERS, duration, exchange.clone()).await;
                closed_loop_result(server, "conns/s", outcome, notes)
            })
            .await;
        let s = Scenario::Connrate;
        vec![
            sides.row(s, "conns/s, 8 workers", Unit::Rate("conns/s"), |o| Some(o.rate())).goal(Goal::RatioAtLeast(0.7)),
            sides.row(s, "p50 connect+echo+close", Unit::Seconds, |o| secs(o.latencies.percentile(50.0))),
        ]
    }

    /// idle: N connections held idle, then each must answer one exchange; server RSS.
    async fn idle(&self, report: &mut Report) -> Vec<Row> {
        let room = self.nofile.saturating_sub(FD_MARGIN) as usize;
        let n = if self.config.idle > room {
            report.note(format!("idle: RLIMIT_NOFILE is {}: holding {room} connections instead of {}", self.nofile, self.config.idle));
            room
        } else {
            self.config.idle
        };
        let specs = self.echo_servers();
        let exchange = Exchange::new(PREFIX, MESSAGE);
        let hold = self.config.idle_hold;
        let sides = self
            .measure_all(report, Scenario::Idle, specs, async |server, notes| {
                let rss_before = server.rss_kib()?;
                let start = Instant::now();
                let (conns, errors) = load::open_many(server.addr, n, IDLE_CONNECTS_IN_FLIGHT).await;
                let connected = conns.len();
                note_errors(notes, &errors);
                eprintln!(
                    "bench: [idle] {}: {connected} of {n} connected in {:.1} s; idle for {hold:?}",
                    server.side.label(),
                    start.elapsed().as_secs_f64()
                );
                tokio::time::sleep(hold).await;
                let rss_idle = server.rss_kib()?;
                let (answered, errors) = load::answer_all(conns, &exchange, IDLE_ANSWERS_IN_FLIGHT).await;
                note_errors(notes, &errors);
                let rss = server.rss_kib()?;
                if answered.len() < n {
                    notes.push(format!("{} of {n} connections answered", answered.len()));
                }
                let per_conn = rss.saturating_sub(rss_before) as f64 / n.max(1) as f64;
                progress(
                    server,
                    &format!(
                        "{} of {n} answered; RSS {} before, {} idle, {} after answering (≈ {per_conn:.1} KiB per connection)",
                        answered.len(),
                        figure(Unit::Kib, rss_before as f64),
                        figure(Unit::Kib, rss_idle as f64),
                        figure(Unit::Kib, rss as f64)
                    ),
                );
                Ok(IdleOutcome { all_answered: answered.len() == n, rss, per_conn })
            })
            .await;
        let s = Scenario::Idle;
        let label = thousands(n as f64);
        let mut answered =
            sides.row(s, format!("all {label} answered after idling"), Unit::YesNo, |o| Some(f64::from(u8::from(o.all_answered))));
        let mut rss = sides.row(s, format!("server RSS, {label} open"), Unit::Kib, |o| Some(o.rss as f64));
        if n >= IDLE_GOAL {
            answered = answered.goal(Goal::AtLeast(1.0));
            rss = rss.goal(Goal::AtMost(1024.0 * 1024.0));
        }
        vec![answered, rss, sides.row(s, "RSS growth per connection", Unit::Kib, |o| Some(o.per_conn))]
    }

    /// fanout: chat clients connected, one line broadcast per round, time until all the
    /// others have it.
    async fn fanout(&self, report: &mut Report) -> Vec<Row> {
        let specs = vec![self.launcher.tokio(BaselineKind::Chat, &[]), self.launcher.switchboard("chat", &[])];
        let (n, rounds) = (self.config.chat_clients, self.config.rounds);
        let sides = self
            .measure_all(report, Scenario::Fanout, specs, async |server, notes| {
                let start = Instant::now();
                let (mut clients, errors) = ChatClients::connect(server.addr, n).await;
                note_errors(notes, &errors);
                let k = clients.len() as u64;
                if k < 2 {
                    bail!("only {k} of {n} clients connected: {}", errors.describe());
                }
                let connected = start.elapsed();
                let expected = k * (k - 1) / 2;
                let joins = clients.settle(expected, JOIN_SETTLE).await;
                if joins < expected {
                    notes.push(format!("only {joins} of {expected} `Client joined` notices arrived within {JOIN_SETTLE:?}"));
                }
                eprintln!(
                    "bench: [fanout] {}: {k} clients connected in {:.1} s, join notices delivered after {:.1} s",
                    server.side.label(),
                    connected.as_secs_f64(),
                    start.elapsed().as_secs_f64()
                );
                let (mut samples, mut errors) = (Vec::new(), Errors::default());
                for round in 0..rounds {
                    match clients.round(round as u32).await {
                        Ok(d) => samples.push(d),
                        Err(e) => errors.record(&e),
                    }
                    tokio::time::sleep(ROUND_PAUSE).await;
                }
                note_errors(notes, &errors);
                let latencies = Latencies::new(samples);
                if latencies.len() == 0 {
                    bail!("no round completed: {}", errors.describe());
                }
                let p = |q| figure(Unit::Seconds, secs(latencies.percentile(q)).unwrap_or(0.0));
                progress(server, &format!("{} rounds to {} others: p50 {}, p99 {}", latencies.len(), k - 1, p(50.0), p(99.0)));
                Ok(latencies)
            })
            .await;
        let s = Scenario::Fanout;
        let others = thousands(n as f64 - 1.0);
        vec![
            sides.row(s, format!("p50 until all {others} others have it"), Unit::Seconds, |l| secs(l.percentile(50.0))),
            sides.row(s, format!("p99 until all {others} others have it"), Unit::Seconds, |l| secs(l.percentile(99.0))),
        ]
    }

    /// getfile: one large download from each server.
    async fn getfile(&self, report: &mut Report, work: &Path) -> Result<Vec<Row>> {
        let size = self.config.getfile_size;
        let dir = work.join("getfile");
        let file = dir.join(GETFILE_NAME);
        eprintln!("bench: [getfile] writing a {} MiB file in {}", size >> 20, dir.display());
        write_pattern_file(&dir, &file, size)?;
        let dir_arg = dir.display().to_string();
        let grant = format!("getfile={dir_arg}");
        let mut specs = vec![
            self.launcher.tokio(BaselineKind::Getfile, &["--dir", &dir_arg]),
            self.launcher.switchboard("getfile", &["--dir", &grant]),
        ];
        specs.extend(self.launcher.seed_getfile(&dir));
        let sides = self
            .measure_all(report, Scenario::Getfile, specs, async |server, _notes| {
                let (bytes, elapsed) = load::download(server.addr, GETFILE_NAME).await?;
                if bytes != size {
                    bail!("got {bytes} of {size} bytes");
                }
                let mb_per_sec = bytes as f64 / 1e6 / elapsed.as_secs_f64();
                progress(server, &format!("{} ({:.2} s)", figure(Unit::MegabytesPerSec, mb_per_sec), elapsed.as_secs_f64()));
                Ok(mb_per_sec)
            })
            .await;
        std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        Ok(vec![
            sides
                .row(Scenario::Getfile, format!("MB/s, one {} MiB download", size >> 20), Unit::MegabytesPerSec, |v| Some(*v))
                .goal(Goal::AtLeast(1000.0))
                .goal(Goal::SeedRatioAtLeast(5.0)),
        ])
    }
}

/// What the idle scenario found on one server.
struct IdleOutcome {
    all_answered: bool,
    rss: u64,
    per_conn: f64,
}

/// A closed-loop run's figure, its errors as notes; an error when nothing succeeded.
fn closed_loop_result(server: &Server, unit: &'static str, outcome: LoopOutcome, notes: &mut Vec<String>) -> Result<LoopOutcome> {
    note_errors(notes, &outcome.errors);
    if outcome.ops == 0 {
        bail!("no operation succeeded: {}", outcome.errors.describe());
    }
    let p = |q| figure(Unit::Seconds, secs(outcome.latencies.percentile(q)).unwrap_or(0.0));
    progress(server, &format!("{}, p50 {}, p99 {}", figure(Unit::Rate(unit), outcome.rate()), p(50.0), p(99.0)));
    Ok(outcome)
}

/// Notes a load's failures, if any.
fn note_errors(notes: &mut Vec<String>, errors: &Errors) {
    if errors.count > 0 {
        notes.push(errors.describe());
    }
}

/// One progress line on stderr.
fn progress(server: &Server, text: &str) {
    eprintln!("bench:     {}: {text}", server.side.label());
}

/// A duration in seconds.
fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

/// Writes `size` bytes of a repeating, non-zero pattern to `file`.
fn write_pattern_file(dir: &Path, file: &Path, size: u64) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8 + 1).collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?);
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// The bench's temporary folder (server logs, the getfile file), removed when dropped
/// unless the logs are to be kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(keep: bool) -> Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("switchboard-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path, keep })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            let _ = std::fs::remove_dir_all(self.path.join("getfile"));
            eprintln!("bench: server logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
