//! What every scenario shares: the run loop, the report's heading, `Bench` (the
//! configuration, the launcher and the work folder) with `measure_all`, which starts each
//! server in turn and measures it, the per-side figures (`Sides`), small helpers for
//! progress lines and notes, and the bench's temporary folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::{Config, Scenario};
use crate::load::{Errors, LoopOutcome};
use crate::process::{Launcher, Server, ServerSpec, Side, listen_overflows, raise_nofile_limit};
use crate::report::{Report, Row, Unit, figure, thousands};

/// Belt and braces: no server is measured for longer than this.
const MEASURE_LIMIT: Duration = Duration::from_secs(600);
/// File descriptors kept free for everything but the connections a scenario holds open.
const FD_MARGIN: u64 = 512;

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
    let bench = Bench { config: &config, launcher: &launcher, nofile, work: work.path() };
    for scenario in &config.scenarios {
        let rows = match scenario {
            Scenario::Rtt => bench.rtt(&mut report).await,
            Scenario::Stream => bench.stream(&mut report).await,
            Scenario::Connrate => bench.connrate(&mut report).await,
            Scenario::Idle => bench.idle(&mut report).await,
            Scenario::Fanout => bench.fanout(&mut report).await,
            Scenario::FanoutHosts => bench.fanout_hosts(&mut report).await,
            Scenario::Getfile => bench.getfile(&mut report).await?,
            Scenario::Stalled => bench.stalled(&mut report).await?,
            Scenario::Faults => bench.faults(&mut report).await,
            Scenario::Reload => bench.reload(&mut report).await,
            Scenario::Admin => bench.admin(&mut report).await,
            Scenario::Tls => bench.tls(&mut report).await?,
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
            "rtt/stream/connrate {:.1} s per server; idle {} connections; fanout {} clients × {} rounds; getfile {} MiB; \
             stalled {} × {} MiB; faults {:.1} s per phase; reload {} swaps.",
            config.duration.as_secs_f64(),
            thousands(config.idle as f64),
            thousands(config.chat_clients as f64),
            config.rounds,
            config.getfile_size >> 20,
            thousands(config.stalled as f64),
            config.stalled_size >> 20,
            config.duration.as_secs_f64(),
            config.swaps
        ),
        "Every server runs in its own process. rtt, stream and connrate start all of theirs at once and measure them in turn, \
         5 rounds of a fifth of the duration each, merged per server; the other scenarios measure one server after the other. \
         Ratios are switchboard / baseline."
            .into(),
    ]
}

/// One figure per server side.
pub struct Sides<M> {
    /// The tokio baseline's.
    pub tokio: Option<M>,
    /// switchboard's.
    pub switchboard: Option<M>,
    /// The seed Python server's.
    pub seed: Option<M>,
    /// The twins' (other languages' builds of the plugin, measured beside switchboard's),
    /// by label, in the order they were measured.
    pub twins: Vec<(&'static str, Option<M>)>,
}

impl<M> Default for Sides<M> {
    fn default() -> Self {
        Sides { tokio: None, switchboard: None, seed: None, twins: Vec::new() }
    }
}

impl<M> Sides<M> {
    /// Sets `side`'s figure.
    pub fn set(&mut self, side: Side, value: Option<M>) {
        match side {
            // switchboard as its own baseline stands in the baseline column.
            Side::Tokio | Side::Reference => self.tokio = value,
            Side::Switchboard => self.switchboard = value,
            Side::Seed => self.seed = value,
            Side::Twin(label) => self.twins.push((label, value)),
        }
    }

    /// Twin `label`'s figure (`None`: not measured, or it failed).
    pub fn twin(&self, label: &str) -> Option<&M> {
        self.twins.iter().find(|(l, _)| *l == label).and_then(|(_, m)| m.as_ref())
    }

    /// A table row with `value` of each side.
    pub fn row(&self, scenario: Scenario, metric: impl Into<String>, unit: Unit, value: impl Fn(&M) -> Option<f64>) -> Row {
        let get = |m: &Option<M>| m.as_ref().and_then(&value);
        Row::new(scenario.name(), metric, unit, get(&self.tokio), get(&self.switchboard)).seed(get(&self.seed))
    }

    /// A table row with twin `label`'s `value` in the switchboard column and switchboard's
    /// own in the baseline column, which the row names `against` (ratios and goals are
    /// then twin / switchboard).
    pub fn twin_row(
        &self,
        scenario: Scenario,
        label: &str,
        against: &'static str,
        metric: impl Into<String>,
        unit: Unit,
        value: impl Fn(&M) -> Option<f64>,
    ) -> Row {
        let baseline = self.switchboard.as_ref().and_then(&value);
        Row::new(scenario.name(), metric, unit, baseline, self.twin(label).and_then(&value)).against(against)
    }
}

/// What the scenarios share: the configuration, the launcher and the work folder.
pub struct Bench<'a> {
    /// The resolved options.
    pub config: &'a Config,
    /// Builds and starts the servers.
    pub launcher: &'a Launcher,
    /// This process's RLIMIT_NOFILE soft limit (the servers inherit it).
    pub nofile: u64,
    /// The bench's temporary folder (logs, the getfile file, plugin copies).
    pub work: &'a Path,
}

impl Bench<'_> {
    /// `wanted` connections to hold open at once, or fewer (with a note) when
    /// RLIMIT_NOFILE leaves no room for them.
    pub fn connections_within_limit(&self, report: &mut Report, scenario: Scenario, wanted: usize) -> usize {
        let room = self.nofile.saturating_sub(FD_MARGIN) as usize;
        if wanted <= room {
            return wanted;
        }
        report.note(format!("{}: RLIMIT_NOFILE is {}: holding {room} connections instead of {wanted}", scenario.name(), self.nofile));
        room
    }

    /// Starts each server in turn, runs `measure` against it, stops it. Failures and
    /// anything odd in the server's log become notes; that side's figure is then missing.
    pub async fn measure_all<M>(
        &self,
        report: &mut Report,
        scenario: Scenario,
        specs: Vec<ServerSpec>,
        mut measure: impl AsyncFnMut(&Server, &mut Vec<String>) -> Result<M>,
    ) -> Sides<M> {
        let mut sides = Sides::default();
        for spec in specs {
            let (side, expects_trouble) = (spec.side, spec.expects_log_trouble);
            let tag = format!("{}/{}", scenario.name(), spec.label());
            let server = match self.launcher.start(scenario.name(), spec).await {
                Ok(server) => server,
                Err(e) => {
                    report.note(format!("{tag}: could not start: {e:#}"));
                    continue;
                }
            };
            let mut notes = Vec::new();
            let overflows = listen_overflows();
            let result = tokio::time::timeout(MEASURE_LIMIT, measure(&server, &mut notes)).await;
            let dropped = match (overflows, listen_overflows()) {
                (Some(before), Some(after)) => after.saturating_sub(before),
                _ => 0,
            };
            stop_and_note(server, expects_trouble, dropped, &mut notes).await;
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
            sides.set(side, value);
        }
        sides
    }
}

/// Stops a measured server and notes what every scenario reports about it: `dropped`
/// connections lost to a full accept queue, the server having exited early, warning
/// and error lines in its log (`expects_trouble`: they are the point of the scenario).
pub async fn stop_and_note(mut server: Server, expects_trouble: bool, dropped: u64, notes: &mut Vec<String>) {
    if dropped > 0 {
        notes.push(format!(
            "{dropped} connection(s) dropped by a full accept queue (TcpExtListenOverflows, system-wide; each costs a 1 s SYN retry)"
        ));
    }
    if !server.alive() {
        notes.push("the server process exited during the scenario".into());
    }
    let log = server.stop().await;
    if log.troubled > 0 {
        let expected = if expects_trouble { " (expected here)" } else { "" };
        notes.push(format!("{} warning/error line(s) in the server log{expected}, e.g. {:?}", log.troubled, log.samples));
    }
}

/// A closed-loop run's figure, its errors as notes; an error when nothing succeeded.
pub fn closed_loop_result(server: &Server, unit: &'static str, outcome: LoopOutcome, notes: &mut Vec<String>) -> Result<LoopOutcome> {
    note_errors(notes, &outcome.errors);
    if outcome.ops == 0 {
        bail!("no operation succeeded: {}", outcome.errors.describe());
    }
    let p = |q| figure(Unit::Seconds, secs(outcome.latencies.percentile(q)).unwrap_or(0.0));
    progress(server, &format!("{}, p50 {}, p99 {}", figure(Unit::Rate(unit), outcome.rate()), p(50.0), p(99.0)));
    Ok(outcome)
}

/// Notes a load's failures, if any.
pub fn note_errors(notes: &mut Vec<String>, errors: &Errors) {
    if errors.count > 0 {
        notes.push(errors.describe());
    }
}

/// One progress line on stderr.
pub fn progress(server: &Server, text: &str) {
    eprintln!("bench:     {}: {text}", server.label);
}

/// A duration in seconds.
pub fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

/// The bench's temporary folder (server logs, the getfile and stalled files, the faults and reload
/// scenarios' plugin copies), removed when dropped unless the logs are to be kept.
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
            let _ = std::fs::remove_dir_all(self.path.join("stalled"));
            eprintln!("bench: server logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Goal, Spread};

    /// A connrate-like run: tokio, switchboard and two twins, one of which failed.
    fn twins_run(tokio: f64, rust: f64, py: f64) -> Report {
        let mut sides = Sides::default();
        sides.set(Side::Tokio, Some(tokio));
        sides.set(Side::Switchboard, Some(rust));
        sides.set(Side::Twin("echo-py"), Some(py));
        sides.set(Side::Twin("echo-js"), None);
        let s = Scenario::Connrate;
        let unit = Unit::Rate("conns/s");
        let rows = vec![
            sides.row(s, "conns/s", unit, |v| Some(*v)),
            sides.twin_row(s, "echo-py", "Rust echo", "conns/s, echo-py", unit, |v| Some(*v)).goal(Goal::RatioAtLeast(0.25)),
            sides.twin_row(s, "echo-js", "Rust echo", "conns/s, echo-js", unit, |v| Some(*v)),
        ];
        Report { rows, ..Default::default() }
    }

    #[test]
    fn twins_are_kept_apart_and_compared_with_switchboard() {
        let run = twins_run(100.0, 80.0, 24.0);
        let table = run.to_string();
        assert!(table.contains("| connrate | conns/s | 100 conns/s | 80 conns/s | 0.80× |"), "{table}");
        assert!(
            table.contains("| connrate | conns/s, echo-py | 80 conns/s | 24 conns/s | 0.30× | – | – | ≥ 0.25× Rust echo | yes |"),
            "{table}"
        );
        assert!(table.contains("| connrate | conns/s, echo-js | 80 conns/s | – | – | – | – | – |  |"), "{table}");
    }

    #[test]
    fn repeats_spread_the_twins_ratios_to_switchboard() {
        let runs = [twins_run(100.0, 80.0, 24.0), twins_run(100.0, 100.0, 20.0), twins_run(100.0, 90.0, 36.0)];
        let table = Spread(&runs).to_string();
        assert!(table.contains("| connrate | conns/s, echo-py | 0.20× | 0.30× | 0.40× | ≥ 0.25× Rust echo | 2 of 3: **no** |"), "{table}");
    }
}
