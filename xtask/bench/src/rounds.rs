//! Interleaved measurement for the timed closed-loop scenarios (rtt, stream, connrate):
//! every server of the scenario runs at once, and the load visits them in turn, a slice
//! of the duration each, for [`ROUNDS`] rounds; each side's slices are merged. A shared
//! machine's slow swings (other tenants, clock frequency) then hit every side alike,
//! instead of whichever server happened to be measured while they lasted.

use std::time::Duration;

use anyhow::Result;

use crate::cli::Scenario;
use crate::harness::{Bench, Sides};
use crate::process::{Server, ServerSpec, Side, listen_overflows};
use crate::report::Report;

/// How many times the load visits each server.
pub const ROUNDS: u32 = 5;

/// A measurement that can absorb another one of the same kind (the next round's).
pub trait Merge {
    /// Adds `other` to this one.
    fn merge(&mut self, other: Self);
}

/// One started server and what its rounds measured so far.
struct Running<M> {
    server: Server,
    expects_trouble: bool,
    total: Option<M>,
    overflows: u64,
}

impl Bench<'_> {
    /// Starts every server, runs `measure(server, slice)` on each in turn for [`ROUNDS`]
    /// rounds (slice = duration / rounds), merges each side's rounds, and hands the total
    /// to `finish`, which checks it and prints its progress line. Failures and anything
    /// odd in a server's log become notes; that side's figure is then missing.
    pub async fn measure_rounds<M: Merge>(
        &self,
        report: &mut Report,
        scenario: Scenario,
        specs: Vec<ServerSpec>,
        mut measure: impl AsyncFnMut(&Server, Duration) -> M,
        finish: impl Fn(&Server, M, &mut Vec<String>) -> Result<M>,
    ) -> Sides<M> {
        let mut running: Vec<Running<M>> = Vec::new();
        for spec in specs {
            let (side, expects_trouble) = (spec.side, spec.expects_log_trouble);
            match self.launcher.start(scenario.name(), spec).await {
                Ok(server) => running.push(Running { server, expects_trouble, total: None, overflows: 0 }),
                Err(e) => report.note(format!("{}/{}: could not start: {e:#}", scenario.name(), side.label())),
            }
        }
        let slice = self.config.duration / ROUNDS;
        eprintln!("bench: [{}] {ROUNDS} rounds of {slice:?} per server, taking turns", scenario.name());
        for _ in 0..ROUNDS {
            for r in &mut running {
                let before = listen_overflows();
                let measured = measure(&r.server, slice).await;
                if let (Some(before), Some(after)) = (before, listen_overflows()) {
                    r.overflows += after.saturating_sub(before);
                }
                match &mut r.total {
                    Some(total) => total.merge(measured),
                    None => r.total = Some(measured),
                }
            }
        }
        let mut sides = Sides::default();
        for mut r in running {
            let side = r.server.side;
            let mut notes = Vec::new();
            if r.overflows > 0 {
                notes.push(format!(
                    "{} connection(s) dropped by a full accept queue (TcpExtListenOverflows, system-wide; each costs a 1 s SYN retry)",
                    r.overflows
                ));
            }
            if !r.server.alive() {
                notes.push("the server process exited during the scenario".into());
            }
            let value = r.total.take().and_then(|total| match finish(&r.server, total, &mut notes) {
                Ok(m) => Some(m),
                Err(e) => {
                    notes.push(format!("failed: {e:#}"));
                    None
                }
            });
            let log = r.server.stop().await;
            if log.troubled > 0 {
                let expected = if r.expects_trouble { " (expected here)" } else { "" };
                notes.push(format!("{} warning/error line(s) in the server log{expected}, e.g. {:?}", log.troubled, log.samples));
            }
            for note in notes {
                report.note(format!("{}/{}: {note}", scenario.name(), side.label()));
            }
            match side {
                Side::Tokio => sides.tokio = value,
                Side::Switchboard => sides.switchboard = value,
                Side::Seed => sides.seed = value,
            }
        }
        sides
    }
}
