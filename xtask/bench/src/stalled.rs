//! stalled: what a getfile download that the client never reads costs the server. One
//! file of `--stalled-size` (100 MiB); `--stalled` (200) clients each send its name and
//! then never read. Once the server's RSS has stopped growing: (RSS then − RSS before) /
//! clients. Against the tokio `copy_buf` getfile baseline, which holds a read buffer per
//! stalled connection too.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::net::TcpStream;

use crate::cli::{BaselineKind, Scenario};
use crate::harness::{Bench, note_errors, progress};
use crate::load;
use crate::process::Server;
use crate::report::{Goal, Report, Row, Unit, figure, thousands};
use crate::scenarios::write_pattern_file;

/// The stalled file's name.
const STALLED_NAME: &str = "stalled.bin";
/// Connects (each followed by its request) in flight at once.
const STALL_CONNECTS_IN_FLIGHT: usize = 64;
/// Between two RSS samples while waiting for it to settle.
const RSS_SAMPLE: Duration = Duration::from_millis(100);
/// RSS has settled when two samples this far apart...
const RSS_WINDOW: Duration = Duration::from_millis(500);
/// ...differ by less than this share of the earlier one.
const RSS_STEADY: f64 = 0.01;
/// Longest wait for the RSS to settle; the last sample counts then, with a note.
const RSS_SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// Longest wait, over all connections, to see that the downloads have begun.
const PEEK_LIMIT: Duration = Duration::from_secs(2);
/// The goal: the server's RSS per stalled download, in KiB.
const PER_DOWNLOAD_GOAL_KIB: f64 = 256.0;

/// What the stalled scenario found on one server.
struct StalledOutcome {
    /// RSS before the clients connected, KiB.
    before: u64,
    /// RSS once settled with every client stalled, KiB.
    after: u64,
    /// (after − before) / stalled connections, KiB.
    per_download: f64,
}

impl Bench<'_> {
    /// stalled: `--stalled` downloads of one file, none of them read; the server's RSS
    /// before and once it stopped growing.
    pub async fn stalled(&self, report: &mut Report) -> Result<Vec<Row>> {
        let s = Scenario::Stalled;
        let size = self.config.stalled_size;
        let n = self.connections_within_limit(report, s, self.config.stalled);
        let dir = self.work.join("stalled");
        let file = dir.join(STALLED_NAME);
        eprintln!("bench: [stalled] writing a {} MiB file in {}", size >> 20, dir.display());
        write_pattern_file(&dir, &file, size)?;
        let dir_arg = dir.display().to_string();
        let grant = format!("getfile={dir_arg}");
        let specs = vec![
            self.launcher.tokio(BaselineKind::Getfile, &["--dir", &dir_arg]).labelled("tokio copy_buf"),
            self.launcher.switchboard("getfile", &["--dir", &grant]),
        ];
        let sides = self.measure_all(report, s, specs, async |server, notes| stall(server, n, notes).await).await;
        std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        let label = thousands(n as f64);
        Ok(vec![
            sides
                .row(s, format!("host RSS per stalled download, {label} × {} MiB unread", size >> 20), Unit::Kib, |o| Some(o.per_download))
                .goal(Goal::AtMost(PER_DOWNLOAD_GOAL_KIB)),
            sides.row(s, "server RSS before the downloads", Unit::Kib, |o| Some(o.before as f64)),
            sides.row(s, format!("server RSS with {label} stalled downloads"), Unit::Kib, |o| Some(o.after as f64)),
        ])
    }
}

/// Opens `n` stalled downloads from `server`, waits for its RSS to settle, checks that
/// the downloads have begun, and closes them.
async fn stall(server: &Server, n: usize, notes: &mut Vec<String>) -> Result<StalledOutcome> {
    let before = server.rss_kib()?;
    let start = Instant::now();
    let (conns, errors) = load::stall(server.addr, n, STALLED_NAME, STALL_CONNECTS_IN_FLIGHT).await;
    note_errors(notes, &errors);
    let k = conns.len();
    if k == 0 {
        bail!("no download could be requested: {}", errors.describe());
    }
    let connected = start.elapsed();
    let (after, settled) = settled_rss(server).await?;
    if !settled {
        notes.push(format!(
            "RSS still moved by ≥ {:.0} % per {RSS_WINDOW:?} after {RSS_SETTLE_LIMIT:?}: the last sample counts",
            RSS_STEADY * 100.0
        ));
    }
    let begun = begun(&conns).await;
    if begun < k {
        notes.push(format!("only {begun} of {k} stalled connections had received a byte"));
    }
    drop(conns);
    let per_download = after.saturating_sub(before) as f64 / k as f64;
    progress(
        server,
        &format!(
            "{k} of {n} requested in {:.1} s, RSS settled {} after ({}); RSS {} before, {} stalled (≈ {per_download:.1} KiB per download); {begun} begun",
            connected.as_secs_f64(),
            figure(Unit::Seconds, (start.elapsed() - connected).as_secs_f64()),
            if settled { "steady" } else { "still moving" },
            figure(Unit::Kib, before as f64),
            figure(Unit::Kib, after as f64),
        ),
    );
    Ok(StalledOutcome { before, after, per_download })
}

/// Samples the server's RSS every [`RSS_SAMPLE`] until two samples [`RSS_WINDOW`] apart
/// differ by less than [`RSS_STEADY`], at most for [`RSS_SETTLE_LIMIT`]; returns the last
/// sample and whether it settled.
async fn settled_rss(server: &Server) -> Result<(u64, bool)> {
    let deadline = Instant::now() + RSS_SETTLE_LIMIT;
    let lag = (RSS_WINDOW.as_millis() / RSS_SAMPLE.as_millis()).max(1) as usize;
    let mut samples = VecDeque::with_capacity(lag + 1);
    let mut ticks = tokio::time::interval(RSS_SAMPLE);
    loop {
        ticks.tick().await;
        let rss = server.rss_kib()?;
        samples.push_back(rss);
        if samples.len() > lag
            && let Some(then) = samples.pop_front()
            && steady(then, rss)
        {
            return Ok((rss, true));
        }
        if Instant::now() >= deadline {
            return Ok((rss, false));
        }
    }
}

/// Whether `now` is within [`RSS_STEADY`] of `then`.
fn steady(then: u64, now: u64) -> bool {
    (now.abs_diff(then) as f64) < RSS_STEADY * then.max(1) as f64
}

/// How many of the connections have bytes waiting (peeked, not read: the downloads
/// stay stalled), waiting at most [`PEEK_LIMIT`] in all.
async fn begun(conns: &[TcpStream]) -> usize {
    let deadline = tokio::time::Instant::now() + PEEK_LIMIT;
    let mut byte = [0u8; 1];
    let mut count = 0;
    for conn in conns {
        if matches!(tokio::time::timeout_at(deadline, conn.peek(&mut byte)).await, Ok(Ok(1))) {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_steady_within_one_percent() {
        assert!(steady(100_000, 100_900));
        assert!(steady(100_000, 99_100));
        assert!(!steady(100_000, 101_000));
        assert!(!steady(0, 1));
    }
}
