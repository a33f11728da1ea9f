//! Interleaved measurement for the timed closed-loop scenarios (rtt, stream, connrate):
//! every server of the scenario runs at once, and the load visits them in turn, a slice
//! of the duration each, for [`ROUNDS`] rounds; each side's slices are merged. A shared
//! machine's slow swings (other tenants, clock frequency) then hit every side alike,
//! instead of whichever server happened to be measured while they lasted.

use std::time::Duration;

use anyhow::Result;

use crate::cli::Scenario;
use crate::harness::{Bench, Sides, stop_and_note};
use crate::process::{Server, ServerSpec, listen_overflows};
use crate::report::Report;

/// How many times the load visits each server.
pub const ROUNDS: u32 = 5;

/// A measurement that can absorb another one of the same kind (the next round's).
pub trait Merge {
    /// Adds `other` to this one.
    fn merge(&mut self, other: Self);
}

/// Adds one round's measurement to the total so far (none before the first round).
pub fn merge_into<M: Merge>(total: &mut Option<M>, round: M) {
    match total {
        Some(total) => total.merge(round),
        None => *total = Some(round),
    }
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
            let (label, expects_trouble) = (spec.label(), spec.expects_log_trouble);
            match self.launcher.start(scenario.name(), spec).await {
                Ok(server) => running.push(Running { server, expects_trouble, total: None, overflows: 0 }),
                Err(e) => report.note(format!("{}/{label}: could not start: {e:#}", scenario.name())),
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
                merge_into(&mut r.total, measured);
            }
        }
        let mut sides = Sides::default();
        for r in running {
            let (side, label) = (r.server.side, r.server.label);
            let mut notes = Vec::new();
            let result = r.total.map(|total| finish(&r.server, total, &mut notes));
            stop_and_note(r.server, r.expects_trouble, r.overflows, &mut notes).await;
            let value = match result {
                Some(Ok(m)) => Some(m),
                Some(Err(e)) => {
                    notes.push(format!("failed: {e:#}"));
                    None
                }
                None => None,
            };
            for note in notes {
                report.note(format!("{}/{label}: {note}", scenario.name()));
            }
            sides.set(side, value);
        }
        sides
    }
}
