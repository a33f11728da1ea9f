//! What the load generators measure: latency samples and their percentiles, error
//! tallies, and the outcome of a closed-loop run.

use std::time::Duration;

use crate::rounds::Merge;

/// Latency samples, sorted.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Sorts the samples.
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies(samples)
    }

    /// The `p`-th percentile (0–100, nearest rank), `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let n = self.0.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        Some(self.0[rank.clamp(1, n) - 1])
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Merge for Latencies {
    fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
        self.0.sort_unstable();
    }
}

/// How many operations failed, and how the first one did.
#[derive(Debug, Default)]
pub struct Errors {
    /// Failed operations.
    pub count: u64,
    /// The first failure's message.
    pub first: Option<String>,
}

impl Errors {
    /// Counts one failure.
    pub fn record(&mut self, e: &anyhow::Error) {
        self.count += 1;
        self.first.get_or_insert_with(|| format!("{e:#}"));
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: Errors) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    /// `""` without failures, else `"N errors, first: ..."`.
    pub fn describe(&self) -> String {
        match &self.first {
            None => String::new(),
            Some(first) => format!("{} error(s), first: {first}", self.count),
        }
    }
}

/// What a closed-loop run did.
#[derive(Debug)]
pub struct LoopOutcome {
    /// Operations that succeeded.
    pub ops: u64,
    /// From start until the last worker stopped.
    pub elapsed: Duration,
    /// One sample per successful operation.
    pub latencies: Latencies,
    /// Failed operations (connects included).
    pub errors: Errors,
}

impl Merge for LoopOutcome {
    fn merge(&mut self, other: LoopOutcome) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.latencies.merge(other.latencies);
        self.errors.merge(other.errors);
    }
}

impl LoopOutcome {
    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}
