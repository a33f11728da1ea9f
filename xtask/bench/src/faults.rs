//! faults: one switchboard serves echo beside eleven copies of the misbehave fixture
//! (panic, alloc, recurse, busy, flood, and six loops on host calls: clock, poll, hub
//! publish, hub names, newline-free print, hub joins). Echo's rtt load runs in two phases against the
//! same process, taking turns in rounds: alone, then while misbehaving clients hammer the
//! other listeners. There is no baseline server: the "baseline" column of these rows is
//! the quiet phase.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::cli::Scenario;
use crate::harness::{Bench, Sides, progress, secs};
use crate::load::{self, Errors, Exchange, Latencies, LoopOutcome, OP_TIMEOUT, bounded, connect};
use crate::process::{Server, ServerSpec};
use crate::report::{Goal, Report, Row, Unit, figure, thousands};
use crate::rounds::{ROUNDS, merge_into};
use crate::scenarios::{MESSAGE, PREFIX, RTT_CONNS};

/// The misbehaving plugins: (file stem, the fixture's MODE).
const MISBEHAVERS: [(&str, &str); 11] = [
    ("panicky", "panic"),
    ("oom", "alloc"),
    ("deep", "recurse"),
    ("busy", "busy"),
    ("flood", "flood"),
    ("clock", "clock-loop"),
    ("polls", "poll-loop"),
    ("publish", "publish-loop"),
    ("names", "names-loop"),
    ("printer", "print-flood"),
    ("members", "member-loop"),
];
/// The ones that loop on host calls until the CPU budget ends them: one client each,
/// reconnecting when closed.
const HOST_CALL_LOOPS: [&str; 6] = ["clock", "polls", "publish", "names", "printer", "members"];
/// The ones whose connections end quickly: each gets this many clients that connect, send
/// a byte and wait for the close, over and over.
const CRASHERS: [&str; 3] = ["panicky", "oom", "deep"];
const CLIENTS_PER_CRASHER: usize = 3;
/// Clients keeping a busy loop running (each is ended by the CPU budget, then reconnects).
const BUSY_CLIENTS: usize = 2;
/// Connections to the flood plugin that never read.
const FLOOD_CLIENTS: usize = 3;
/// The limits the faults switchboard runs with (the e2e suite's).
const FAULT_LIMITS: [&str; 6] = ["--cpu-budget", "2s", "--memory-limit", "64MiB", "--idle-timeout", "3s"];
/// Log lines that show the misbehaviour really happened.
const FAULT_LOG_SIGNS: [&str; 3] = ["panicking on purpose", "memory limit", "cpu budget"];
/// A misbehaving connection still open after this long is a failure.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);
/// After a failed attempt, a misbehaving client pauses this long.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// How often the server's RSS is sampled during a faults phase.
const RSS_SAMPLE: Duration = Duration::from_millis(50);
/// faults goal: echo p99 with misbehaving plugins at most this many times the quiet p99.
const FAULTS_P99_GOAL: f64 = 2.0;
/// faults goal: every host-call loop is closed within 2.5 s of its first byte (1.25× its 2 s budget).
const HOST_CALL_LOOP_GOAL: f64 = 2.5;

impl Bench<'_> {
    /// faults: echo p99 alone, then beside misbehaving plugins, in one switchboard process.
    pub async fn faults(&self, report: &mut Report) -> Vec<Row> {
        let sides = match self.faults_server() {
            Ok(spec) => {
                let duration = self.config.duration;
                self.measure_all(report, Scenario::Faults, vec![spec], async |server, notes| faults_run(server, duration, notes).await)
                    .await
            }
            Err(e) => {
                report.note(format!("faults: could not run: {e:#}"));
                Sides::default()
            }
        };
        let o = sides.switchboard.as_ref();
        let row = |metric: &str, unit: Unit, value: &dyn Fn(&LoopOutcome) -> Option<f64>| {
            Row::new(Scenario::Faults.name(), metric, unit, o.and_then(|o| value(&o.quiet)), o.and_then(|o| value(&o.loaded)))
                .against("quiet")
        };
        if let Some(o) = o {
            report.note(format!(
                "faults: the baseline column of its rows is switchboard itself, echo alone (\"quiet\"); the switchboard column \
                 is the same process and the same load (8 conns × 32 B) while misbehaving clients ran against the other \
                 listeners ({}); the two phases took turns, {ROUNDS} rounds each; the ratio is loaded / quiet",
                o.attacks
            ));
        }
        vec![
            row("echo p99, quiet (baseline col.) → with misbehaving plugins", Unit::Seconds, &|l| secs(l.latencies.percentile(99.0)))
                .goal(Goal::RatioAtMost(FAULTS_P99_GOAL)),
            row("echo msgs/s, quiet → with misbehaving plugins", Unit::Rate("msgs/s"), &|l| Some(l.rate())),
            row("echo errors, quiet → with misbehaving plugins", Unit::Count("errors"), &|l| Some(l.errors.count as f64))
                .goal(Goal::AtMost(0.0)),
            Row::new(
                Scenario::Faults.name(),
                "server RSS peak, quiet → with misbehaving plugins",
                Unit::Kib,
                o.map(|o| o.quiet_rss as f64),
                o.map(|o| o.loaded_rss as f64),
            )
            .against("quiet"),
            Row::new(
                Scenario::Faults.name(),
                "busy loop closed after (cpu budget 2 s), max",
                Unit::Seconds,
                None,
                o.and_then(|o| secs(o.busy_closed.percentile(100.0))),
            ),
            Row::new(
                Scenario::Faults.name(),
                "host-call loop closed after (cpu budget 2 s), max",
                Unit::Seconds,
                None,
                o.and_then(|o| secs(o.loops_closed.percentile(100.0))),
            )
            .goal(Goal::AtMost(HOST_CALL_LOOP_GOAL)),
        ]
    }

    /// The faults server: echo plus copies of misbehave.wasm in the work folder.
    fn faults_server(&self) -> Result<ServerSpec> {
        let fixtures = self.config.fixtures.as_ref().context(
            "no fixtures folder: pass --fixtures DIR, the folder with misbehave.wasm (`cargo xtask bench` passes TARGET/fixtures)",
        )?;
        let fixture = fixtures.join("misbehave.wasm");
        if !fixture.is_file() {
            bail!("{} is missing: build the fixtures with `cargo xtask build`", fixture.display());
        }
        let dir = self.work.join("faults");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut wasm = vec![self.launcher.plugin_path("echo")];
        let mut extra: Vec<String> = Vec::new();
        for (name, mode) in MISBEHAVERS {
            let copy = dir.join(format!("{name}.wasm"));
            std::fs::copy(&fixture, &copy).with_context(|| format!("copying {} to {}", fixture.display(), copy.display()))?;
            wasm.push(copy);
            extra.extend(["--set".into(), format!("{name}.MODE={mode}")]);
        }
        extra.extend(FAULT_LIMITS.map(String::from));
        Ok(self.launcher.switchboard_many(&wasm, &extra).expecting_log_trouble())
    }
}

/// What the faults scenario measured.
struct FaultsOutcome {
    /// Phase 1: echo alone.
    quiet: LoopOutcome,
    /// Phase 2: echo beside the misbehaving clients.
    loaded: LoopOutcome,
    /// Peak server RSS in each phase, KiB.
    quiet_rss: u64,
    loaded_rss: u64,
    /// How long each busy loop ran before the server closed its connection.
    busy_closed: Latencies,
    /// The same for the host-call loops.
    loops_closed: Latencies,
    /// What the misbehaving clients did, for the note.
    attacks: String,
}

/// The faults phases against one server, in [`ROUNDS`] rounds: echo alone for a slice of
/// the duration, then the same load beside the misbehaving clients for another slice;
/// the next round starts once every misbehaving connection has closed. Each phase's
/// rounds are merged, so the machine's swings hit both phases alike.
async fn faults_run(server: &Server, duration: Duration, notes: &mut Vec<String>) -> Result<FaultsOutcome> {
    let listener = |name: &str| server.listener(name).with_context(|| format!("no `listening {name} ...` line"));
    let echo = listener("echo")?;
    let exchange = Exchange::new(PREFIX, MESSAGE);
    let slice = duration / ROUNDS;
    let (mut quiet, mut loaded): (Option<LoopOutcome>, Option<LoopOutcome>) = (None, None);
    let (mut quiet_rss, mut loaded_rss) = (0, 0);
    let mut tallies: Vec<Attack> = Vec::new();
    eprintln!("bench: [faults] {ROUNDS} rounds: echo alone for {slice:?}, then beside the misbehaving plugins for {slice:?}");
    for _ in 0..ROUNDS {
        let (outcome, rss) = tokio::join!(load::rtt(echo, RTT_CONNS, slice, exchange.clone()), peak_rss(server, slice));
        merge_into(&mut quiet, outcome);
        quiet_rss = quiet_rss.max(rss);

        let deadline = Instant::now() + slice;
        let mut attackers = JoinSet::new();
        for name in CRASHERS {
            let addr = listener(name)?;
            for _ in 0..CLIENTS_PER_CRASHER {
                attackers.spawn(provoke_until(name, addr, deadline));
            }
        }
        let busy = listener("busy")?;
        for _ in 0..BUSY_CLIENTS {
            attackers.spawn(provoke_until("busy", busy, deadline));
        }
        for name in HOST_CALL_LOOPS {
            attackers.spawn(provoke_until(name, listener(name)?, deadline));
        }
        let flood = listener("flood")?;
        for _ in 0..FLOOD_CLIENTS {
            attackers.spawn(hold_unread(flood, deadline));
        }
        let (outcome, rss) = tokio::join!(load::rtt(echo, RTT_CONNS, slice, exchange.clone()), peak_rss(server, slice));
        merge_into(&mut loaded, outcome);
        loaded_rss = loaded_rss.max(rss);
        // The clients stop starting connections at the deadline; the last busy loop may
        // run for its whole CPU budget after it, and the next quiet round waits for it.
        while let Some(joined) = attackers.join_next().await {
            let attack = joined.context("a misbehaving client failed")?;
            match tallies.iter_mut().find(|t| t.name == attack.name) {
                Some(t) => t.merge(attack),
                None => tallies.push(attack),
            }
        }
    }
    let (quiet, loaded) = (quiet.context("no round ran")?, loaded.context("no round ran")?);
    phase_progress(server, "quiet", &quiet, notes);
    phase_progress(server, "with misbehaving plugins", &loaded, notes);

    let mut busy_closed = Vec::new();
    let mut loops_closed = Vec::new();
    let mut described = Vec::new();
    for t in &mut tallies {
        let closes = std::mem::take(&mut t.closed);
        if t.name == "busy" {
            busy_closed.clone_from(&closes);
        }
        if HOST_CALL_LOOPS.contains(&t.name) {
            loops_closed.extend_from_slice(&closes);
        }
        let closes = Latencies::new(closes);
        let mut text = format!("{} {} connection(s) closed by the server", t.name, thousands(closes.len() as f64));
        if let (Some(lo), Some(hi)) = (closes.percentile(0.0), closes.percentile(100.0)) {
            text += &format!(" after {}–{}", figure(Unit::Seconds, lo.as_secs_f64()), figure(Unit::Seconds, hi.as_secs_f64()));
        }
        if t.held > 0 {
            text = format!("{} {} connection(s) held unread", t.name, t.held);
        }
        if t.errors.count > 0 {
            notes.push(format!("misbehaving client of {}: {}", t.name, t.errors.describe()));
        }
        described.push(text);
    }
    eprintln!("bench:     {}", described.join("; "));
    let log = server.log_text();
    for sign in FAULT_LOG_SIGNS {
        if !log.contains(sign) {
            notes.push(format!("{sign:?} is not in the server log: that misbehaviour may not have happened"));
        }
    }
    if quiet.ops == 0 || loaded.ops == 0 {
        bail!("echo answered nothing in a phase: quiet {}; loaded {}", quiet.errors.describe(), loaded.errors.describe());
    }
    Ok(FaultsOutcome {
        quiet,
        loaded,
        quiet_rss,
        loaded_rss,
        busy_closed: Latencies::new(busy_closed),
        loops_closed: Latencies::new(loops_closed),
        attacks: described.join("; "),
    })
}

/// A progress line for one faults phase, its errors as a note.
fn phase_progress(server: &Server, phase: &str, outcome: &LoopOutcome, notes: &mut Vec<String>) {
    if outcome.errors.count > 0 {
        notes.push(format!("echo, {phase}: {}", outcome.errors.describe()));
    }
    let p = |q| figure(Unit::Seconds, secs(outcome.latencies.percentile(q)).unwrap_or(0.0));
    progress(
        server,
        &format!(
            "{phase}: {}, p50 {}, p99 {}, {} errors",
            figure(Unit::Rate("msgs/s"), outcome.rate()),
            p(50.0),
            p(99.0),
            outcome.errors.count
        ),
    );
}

/// The server's highest RSS over `duration`, sampled every [`RSS_SAMPLE`] (KiB).
async fn peak_rss(server: &Server, duration: Duration) -> u64 {
    let end = Instant::now() + duration;
    let mut peak = 0;
    while Instant::now() < end {
        peak = peak.max(server.rss_kib().unwrap_or(0));
        tokio::time::sleep(RSS_SAMPLE).await;
    }
    peak
}

/// What the clients of one misbehaving plugin did.
#[derive(Default)]
struct Attack {
    name: &'static str,
    /// For each connection the server closed: time from the byte sent to the close.
    closed: Vec<Duration>,
    /// Connections held open without reading (flood).
    held: usize,
    errors: Errors,
}

impl Attack {
    fn merge(&mut self, other: Attack) {
        self.closed.extend(other.closed);
        self.held += other.held;
        self.errors.merge(other.errors);
    }
}

/// Until `deadline`: connect, send a byte, wait for the server to close; again.
async fn provoke_until(name: &'static str, addr: SocketAddr, deadline: Instant) -> Attack {
    let mut attack = Attack { name, ..Default::default() };
    while Instant::now() < deadline {
        match provoke(addr).await {
            Ok(took) => attack.closed.push(took),
            Err(e) => {
                attack.errors.record(&e);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    attack
}

/// One misbehaving connection: send a byte, read until the server closes (EOF or reset);
/// the time from the byte to the close.
async fn provoke(addr: SocketAddr) -> Result<Duration> {
    let mut stream = connect(addr).await?;
    bounded(OP_TIMEOUT, stream.write_all(b"x")).await?;
    let start = Instant::now();
    let end = tokio::time::Instant::from_std(start + CLOSE_LIMIT);
    let mut sink = vec![0u8; 64 << 10];
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut sink)).await {
            Ok(Ok(0)) => return Ok(start.elapsed()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => return Ok(start.elapsed()),
            Ok(Err(e)) => bail!("reading: {e}"),
            Err(_) => bail!("the connection was still open after {CLOSE_LIMIT:?}"),
        }
    }
}

/// A connection to the flood plugin that never reads, held until `deadline`.
async fn hold_unread(addr: SocketAddr, deadline: Instant) -> Attack {
    let mut attack = Attack { name: "flood", ..Default::default() };
    match connect(addr).await {
        Ok(stream) => {
            attack.held = 1;
            tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
            drop(stream);
        }
        Err(e) => attack.errors.record(&e),
    }
    attack
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misbehavers_have_distinct_names() {
        for (i, (a, _)) in MISBEHAVERS.iter().enumerate() {
            assert!(MISBEHAVERS[i + 1..].iter().all(|(b, _)| a != b));
            assert_ne!(*a, "echo");
        }
        assert!(CRASHERS.iter().chain(&HOST_CALL_LOOPS).all(|c| MISBEHAVERS.iter().any(|(m, _)| m == c)));
    }
}
