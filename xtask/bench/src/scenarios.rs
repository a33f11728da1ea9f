//! The six comparative scenarios (rtt, stream, connrate, idle, fanout, getfile). Each
//! starts its servers (tokio baseline, switchboard, the seed's Python server where there is
//! one, and in connrate echo.wasm's Python and JavaScript twins), drives every one of them
//! with the same load generator, stops it, and turns the figures into table rows. faults
//! and reload have their own modules.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::chat::ChatClients;
use crate::cli::{BaselineKind, Scenario};
use crate::harness::{Bench, Sides, closed_loop_result, note_errors, progress, secs};
use crate::load::{self, Errors, Exchange, Latencies, LoopOutcome};
use crate::process::{Server, ServerSpec};
use crate::report::{Goal, Report, Row, Unit, figure, thousands};

/// Connections in the rtt and faults scenarios.
pub const RTT_CONNS: usize = 8;
/// Workers in the connrate scenario.
pub const CONNRATE_WORKERS: usize = 8;
/// Request size in rtt, connrate, idle and faults.
pub const MESSAGE: usize = 32;
/// The echo plugin's default prefix.
pub const PREFIX: &[u8] = b"Echo=>";
/// Connections in the stream scenario (and tls's bulk echo)...
pub const STREAM_CONNS: usize = 4;
/// ...and the size of each of their writes.
pub const STREAM_WRITE: usize = 64 << 10;
/// Idle scenario: connects / exchanges in flight at once.
const IDLE_CONNECTS_IN_FLIGHT: usize = 64;
const IDLE_ANSWERS_IN_FLIGHT: usize = 256;
/// The goals' idle connection count.
const IDLE_GOAL: usize = 10_000;
/// Longest wait for the chat join notices to arrive everywhere.
const JOIN_SETTLE: Duration = Duration::from_secs(60);
/// Pause between fan-out rounds.
const ROUND_PAUSE: Duration = Duration::from_millis(20);
/// The downloaded file's name.
const GETFILE_NAME: &str = "bench.bin";
/// What the twins' rows call the baseline column: echo.wasm's switchboard figure.
const RUST_ECHO: &str = "Rust echo";

/// Another language's build of a Rust plugin, served beside it by switchboard.
struct Twin {
    /// Its plugin name (`PLUGINS/NAME.wasm`), also its label in progress lines, notes and logs.
    plugin: &'static str,
    /// What its rows call it.
    name: &'static str,
    /// Goal for its rate, as a share of the Rust plugin's.
    goal: Option<f64>,
}

/// echo.wasm's twins, measured beside it in connrate.
const ECHO_TWINS: [Twin; 2] = [
    Twin { plugin: "echo-py", name: "echo-py (Python twin)", goal: Some(0.25) },
    Twin { plugin: "echo-js", name: "echo-js (JavaScript twin)", goal: None },
];

impl Bench<'_> {
    /// The `Echo=>` echo servers: the tokio baseline and switchboard's echo.wasm (with
    /// `switchboard_args` after its `--plugin`).
    fn echo_servers(&self, switchboard_args: &[&str]) -> Vec<ServerSpec> {
        vec![self.launcher.tokio(BaselineKind::Echo, &["--prefix=Echo=>"]), self.launcher.switchboard("echo", switchboard_args)]
    }

    /// A closed-loop load (`load(address, slice)`) measured in rounds; `unit` names what
    /// one operation is, for the progress line.
    pub(crate) async fn closed_loop_rounds(
        &self,
        report: &mut Report,
        scenario: Scenario,
        specs: Vec<ServerSpec>,
        unit: &'static str,
        mut load: impl AsyncFnMut(std::net::SocketAddr, Duration) -> LoopOutcome,
    ) -> Sides<LoopOutcome> {
        self.measure_rounds(
            report,
            scenario,
            specs,
            async |server, slice| load(server.addr, slice).await,
            |server, outcome, notes| closed_loop_result(server, unit, outcome, notes),
        )
        .await
    }

    /// rtt: 8 connections × 32-byte request/response for the configured duration.
    pub async fn rtt(&self, report: &mut Report) -> Vec<Row> {
        let mut specs = self.echo_servers(&[]);
        specs.extend(self.launcher.seed_echo());
        let exchange = Exchange::new(PREFIX, MESSAGE);
        let sides = self
            .closed_loop_rounds(report, Scenario::Rtt, specs, "msgs/s", async |addr, slice| {
                load::rtt(addr, RTT_CONNS, slice, exchange.clone()).await
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
    pub async fn stream(&self, report: &mut Report) -> Vec<Row> {
        let specs =
            vec![self.launcher.tokio(BaselineKind::Echo, &["--prefix="]), self.launcher.switchboard("echo", &["--set", "echo.PREFIX="])];
        let sides = self
            .measure_rounds(
                report,
                Scenario::Stream,
                specs,
                async |server, slice| load::stream_echo(server.addr, STREAM_CONNS, STREAM_WRITE, slice).await,
                |server, outcome, notes| {
                    note_errors(notes, &outcome.errors);
                    if outcome.received == 0 {
                        bail!("nothing came back: {}", outcome.errors.describe());
                    }
                    progress(
                        server,
                        &format!("{} (sent {} MB)", figure(Unit::MegabytesPerSec, outcome.mb_per_sec()), outcome.sent / 1_000_000),
                    );
                    Ok(outcome)
                },
            )
            .await;
        vec![
            sides
                .row(Scenario::Stream, "MB/s echoed, 4 conns × 64 KiB", Unit::MegabytesPerSec, |o| Some(o.mb_per_sec()))
                .goal(Goal::RatioAtLeast(0.75)),
        ]
    }

    /// The twins whose `.wasm` is in the plugins folder; a note for each one skipped.
    fn present_twins<'t>(&self, report: &mut Report, scenario: Scenario, twins: &'t [Twin]) -> Vec<&'t Twin> {
        let mut present = Vec::new();
        for twin in twins {
            let wasm = self.launcher.plugin_path(twin.plugin);
            if wasm.is_file() {
                present.push(twin);
            } else {
                report.note(format!(
                    "{}: {} skipped: {} is absent (`cargo xtask build` builds the Python and JavaScript twins only when \
                     python3 with venv and node/npm are installed)",
                    scenario.name(),
                    twin.name,
                    wasm.display()
                ));
            }
        }
        present
    }

    /// connrate: 8 workers doing connect + one exchange + close; echo.wasm's Python and
    /// JavaScript twins take their turns in the same rounds, and their rows compare them
    /// with echo.wasm.
    pub async fn connrate(&self, report: &mut Report) -> Vec<Row> {
        let s = Scenario::Connrate;
        let mut specs = self.echo_servers(&[]);
        let twins = self.present_twins(report, s, &ECHO_TWINS);
        specs.extend(twins.iter().map(|t| self.launcher.switchboard(t.plugin, &[]).twin(t.plugin)));
        let exchange = Exchange::new(PREFIX, MESSAGE);
        let sides = self
            .closed_loop_rounds(report, s, specs, "conns/s", async |addr, slice| {
                load::connrate(addr, CONNRATE_WORKERS, slice, exchange.clone()).await
            })
            .await;
        let rate = |o: &LoopOutcome| Some(o.rate());
        let p50 = |o: &LoopOutcome| secs(o.latencies.percentile(50.0));
        let mut rows = vec![
            sides.row(s, "conns/s, 8 workers", Unit::Rate("conns/s"), rate).goal(Goal::RatioAtLeast(0.7)),
            sides.row(s, "p50 connect+echo+close", Unit::Seconds, p50),
        ];
        for twin in &twins {
            let mut row = sides.twin_row(s, twin.plugin, RUST_ECHO, format!("conns/s, {}", twin.name), Unit::Rate("conns/s"), rate);
            if let Some(share) = twin.goal {
                row = row.goal(Goal::RatioAtLeast(share));
            }
            rows.push(row);
            rows.push(sides.twin_row(s, twin.plugin, RUST_ECHO, format!("p50 connect+echo+close, {}", twin.name), Unit::Seconds, p50));
        }
        if !twins.is_empty() {
            let names: Vec<&str> = twins.iter().map(|t| t.plugin).collect();
            report.note(format!(
                "{}: in the {} rows the baseline column holds Rust echo.wasm's switchboard figure of this run (same rounds), \
                 the switchboard column the twin's",
                s.name(),
                names.join(" and ")
            ));
        }
        rows
    }

    /// idle: N connections held idle, then each must answer one exchange; server RSS.
    pub async fn idle(&self, report: &mut Report) -> Vec<Row> {
        let n = self.connections_within_limit(report, Scenario::Idle, self.config.idle);
        // Room for all of them: serve's default --max-connections is 10,000.
        let max = n.max(10_000).to_string();
        let specs = self.echo_servers(&["--max-connections", &max]);
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
                    server.label,
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
    pub async fn fanout(&self, report: &mut Report) -> Vec<Row> {
        let specs = vec![self.launcher.tokio(BaselineKind::Chat, &[]), self.launcher.switchboard("chat", &[])];
        let (n, rounds) = (self.config.chat_clients, self.config.rounds);
        let sides = self
            .measure_all(report, Scenario::Fanout, specs, async |server, notes| {
                let (clients, errors) = ChatClients::connect(server.addr, n).await;
                fanout_rounds(server.label, clients, errors, rounds, notes).await.inspect(|latencies| {
                    progress(server, &latency_line(latencies, n));
                })
            })
            .await;
        let s = Scenario::Fanout;
        let others = thousands(n as f64 - 1.0);
        vec![
            sides.row(s, format!("p50 until all {others} others have it"), Unit::Seconds, |l| secs(l.percentile(50.0))),
            sides.row(s, format!("p99 until all {others} others have it"), Unit::Seconds, |l| secs(l.percentile(99.0))),
        ]
    }

    /// getfile: one large download from each server; then from the sendfile baseline,
    /// whose figure fills the baseline column of a row of its own.
    pub async fn getfile(&self, report: &mut Report) -> Result<Vec<Row>> {
        let size = self.config.getfile_size;
        let dir = self.work.join("getfile");
        let file = dir.join(GETFILE_NAME);
        eprintln!("bench: [getfile] writing a {} MiB file in {}", size >> 20, dir.display());
        write_pattern_file(&dir, &file, size)?;
        let dir_arg = dir.display().to_string();
        let grant = format!("getfile={dir_arg}");
        let mut specs = vec![
            self.launcher.tokio(BaselineKind::Getfile, &["--dir", &dir_arg]).labelled("tokio copy_buf"),
            self.launcher.switchboard("getfile", &["--dir", &grant]),
        ];
        specs.extend(self.launcher.seed_getfile(&dir));
        let mut download = async |server: &Server, _notes: &mut Vec<String>| {
            let (bytes, elapsed) = load::download(server.addr, GETFILE_NAME).await?;
            if bytes != size {
                bail!("got {bytes} of {size} bytes");
            }
            let mb_per_sec = bytes as f64 / 1e6 / elapsed.as_secs_f64();
            progress(server, &format!("{} ({:.2} s)", figure(Unit::MegabytesPerSec, mb_per_sec), elapsed.as_secs_f64()));
            Ok(mb_per_sec)
        };
        let sides = self.measure_all(report, Scenario::Getfile, specs, &mut download).await;
        let sendfile = vec![self.launcher.tokio(BaselineKind::Sendfile, &["--dir", &dir_arg]).labelled("tokio sendfile")];
        let physical = self.measure_all(report, Scenario::Getfile, sendfile, &mut download).await;
        std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        let s = Scenario::Getfile;
        let metric = format!("MB/s, one {} MiB download", size >> 20);
        Ok(vec![
            sides
                .row(s, metric.clone(), Unit::MegabytesPerSec, |v| Some(*v))
                .against("tokio copy_buf")
                .goal(Goal::RatioAtLeast(1.0))
                .goal(Goal::SeedRatioAtLeast(5.0)),
            Row::new(s.name(), format!("{metric}, sendfile(2) baseline"), Unit::MegabytesPerSec, physical.tokio, sides.switchboard)
                .against("sendfile"),
        ])
    }
}

/// Settles the join notices of connected chat clients, then times `rounds` fan-out
/// rounds; `errors` (from connecting) and the rounds' failures become notes.
pub async fn fanout_rounds(
    label: &str,
    mut clients: ChatClients,
    errors: Errors,
    rounds: usize,
    notes: &mut Vec<String>,
) -> Result<Latencies> {
    let start = Instant::now();
    note_errors(notes, &errors);
    let k = clients.len() as u64;
    if k < 2 {
        bail!("only {k} clients connected: {}", errors.describe());
    }
    let connected = start.elapsed();
    let expected = k * (k - 1) / 2;
    let joins = clients.settle(expected, JOIN_SETTLE).await;
    if joins < expected {
        notes.push(format!("only {joins} of {expected} `Client joined` notices arrived within {JOIN_SETTLE:?}"));
    }
    eprintln!(
        "bench: [fanout] {label}: {k} clients connected in {:.1} s, join notices delivered after {:.1} s",
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
    Ok(latencies)
}

/// `R rounds to N others: p50 …, p99 …` for a progress line.
pub fn latency_line(latencies: &Latencies, clients: usize) -> String {
    let p = |q| figure(Unit::Seconds, secs(latencies.percentile(q)).unwrap_or(0.0));
    format!("{} rounds to {} others: p50 {}, p99 {}", latencies.len(), clients.saturating_sub(1), p(50.0), p(99.0))
}

/// What the idle scenario found on one server.
struct IdleOutcome {
    all_answered: bool,
    rss: u64,
    per_conn: f64,
}

/// Writes `size` bytes of a repeating, non-zero pattern to `file` (creating `dir`).
pub fn write_pattern_file(dir: &Path, file: &Path, size: u64) -> Result<()> {
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
