//! [`Histogram`]: a distribution of durations that costs a connection two relaxed atomic
//! adds to record into, read at scrape time. (prometheus-client's own histogram takes a
//! mutex on every observation, which a busy listener would contend for.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds (seconds) for how long connections last: 1 ms to an hour.
pub const CONNECTION_SECONDS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0];

/// Bucket bounds (seconds) for making an instance: 10 µs (a pooled Rust plugin takes
/// tens of µs) to 1 s.
pub const INSTANTIATION_SECONDS: &[f64] =
    &[0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.1, 1.0];

/// Durations counted into fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds (inclusive, ascending); one more bucket above the last is `+Inf`.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); `bounds.len() + 1` of them.
    buckets: Box<[AtomicU64]>,
    /// The sum of all observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// A copy of a [`Histogram`] as the exposition needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// The sum of the observations, in seconds.
    pub sum: f64,
    /// How many observations there were (always the sum of the buckets).
    pub count: u64,
    /// `(upper bound, observations in this bucket alone)`, the last bound `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending, in seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        Histogram { bounds, buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_nanos: AtomicU64::new(0) }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        // The first bucket whose bound is at least the value (`le` is inclusive).
        let i = self.bounds.partition_point(|b| *b < seconds);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The current counts. The count is the sum of the buckets read, so the two always
    /// agree (an exposition whose `_count` differs from its `+Inf` bucket is invalid).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts = self.buckets.iter().map(|b| b.load(Ordering::Relaxed));
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(counts).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        HistogramSnapshot { sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9, count, buckets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[0.001, 0.01, 1.0]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 2), (0.01, 1), (1.0, 0), (f64::INFINITY, 1)]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 5.0035).abs() < 1e-9, "{}", s.sum);
    }
}
