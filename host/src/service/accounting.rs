//! Accounting: what each plugin's conversations did, counted where it happens, and an
//! allowance of failure log lines, so a flood of failures cannot flood the log.
//!
//! Every listener of a plugin holds its own [`ListenerStats`] from the moment it starts,
//! so counting costs a conversation one relaxed atomic add per event on a handle it
//! already has: no lock, no lookup by label. The metrics endpoint and the shutdown
//! summary read the counters when asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

pub(crate) use super::endings::{Dropped, Ended};
use super::handshakes::{Handshakes, HandshakesSnapshot};
use crate::admission::Refusal;
use crate::guest::traffic::Traffic;
use crate::util::histogram::{CONNECTION_SECONDS, Histogram, HistogramSnapshot, INSTANTIATION_SECONDS};
use crate::util::log_limit::LogLimiter;

/// Everything counted for one plugin: how its calls failed, and each listener's stats.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// `handle-connection` (or `handle-datagram`) returned `err`.
    pub(crate) errors: AtomicU64,
    /// The plugin trapped (panics included).
    pub(crate) traps: AtomicU64,
    /// Conversations ended by a limit (memory, CPU, idle, duration).
    pub(crate) limit_hits: AtomicU64,
    /// Conversations the host failed to start (its own failure, not the plugin's).
    pub(crate) host_failures: AtomicU64,
    /// Every listener the plugin has had, in the order they started. A listener that
    /// stopped keeps its totals (a listener on the same address later takes them up).
    listeners: Mutex<Vec<Arc<ListenerStats>>>,
    log: LogLimiter,
}

/// A point-in-time copy of [`Counters`], all listeners together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Snapshot {
    /// Conversations served (admitted and started; on UDP, datagrams handed to the plugin).
    pub(crate) served: u64,
    /// See [`Counters::errors`].
    pub(crate) errors: u64,
    /// See [`Counters::traps`].
    pub(crate) traps: u64,
    /// See [`Counters::limit_hits`].
    pub(crate) limit_hits: u64,
    /// See [`Counters::host_failures`].
    pub(crate) host_failures: u64,
    /// Conversations refused at admission, and datagrams the UDP guards refused.
    pub(crate) refused: u64,
}

impl Counters {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (mut served, mut refused) = (0, 0);
        for listener in self.listeners() {
            served += get(&listener.accepted);
            refused += listener.refused.iter().map(get).sum::<u64>();
            refused += Dropped::ALL.iter().filter(|d| d.guard_refusal()).map(|d| get(&listener.dropped[*d as usize])).sum::<u64>();
        }
        Snapshot {
            served,
            errors: get(&self.errors),
            traps: get(&self.traps),
            limit_hits: get(&self.limit_hits),
            host_failures: get(&self.host_failures),
            refused,
        }
    }

    /// Whether a failure log line may be written now; see [`LogLimiter`].
    pub(crate) fn may_log(&self) -> Option<u64> {
        self.log.allow()
    }

    /// The stats of the listener on `transport` at `address` (the bound address, or the
    /// device path): the existing ones if the plugin had such a listener before.
    pub(crate) fn listener(&self, transport: &'static str, address: String) -> Arc<ListenerStats> {
        let mut listeners = self.listeners.lock();
        if let Some(existing) = listeners.iter().find(|l| l.transport == transport && l.address == address) {
            return existing.clone();
        }
        let stats = Arc::new(ListenerStats::new(transport, address));
        listeners.push(stats.clone());
        stats
    }

    /// Every listener's stats.
    pub(crate) fn listeners(&self) -> Vec<Arc<ListenerStats>> {
        self.listeners.lock().clone()
    }
}

/// What one listener's conversations did. Shared by the listener's loop and every
/// conversation it starts.
#[derive(Debug)]
pub(crate) struct ListenerStats {
    /// `tcp`, `tls`, `udp` or `serial`.
    pub(crate) transport: &'static str,
    /// The bound address, or the device path.
    pub(crate) address: String,
    accepted: AtomicU64,
    active: AtomicU64,
    ended: [AtomicU64; Ended::ALL.len()],
    refused: [AtomicU64; Refusal::ALL.len()],
    answered: AtomicU64,
    dropped: [AtomicU64; Dropped::ALL.len()],
    /// Bytes moved, counted by each conversation's streams as they move them.
    pub(crate) traffic: Arc<Traffic>,
    duration: Histogram,
    /// How long making an instance took.
    pub(crate) instantiation: Histogram,
    /// TLS handshakes (on a `tls` listener).
    pub(crate) handshakes: Handshakes,
}

/// A point-in-time copy of [`ListenerStats`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListenerSnapshot {
    /// Conversations started (UDP: datagrams handed to the plugin).
    pub(crate) accepted: u64,
    /// Conversations open now (UDP: datagrams being handled).
    pub(crate) active: u64,
    /// `(ending, count)` for every [`Ended`].
    pub(crate) ended: Vec<(&'static str, u64)>,
    /// `(reason, count)` for every [`Refusal`].
    pub(crate) refused: Vec<(&'static str, u64)>,
    /// Datagrams the plugin answered (with zero or more replies).
    pub(crate) answered: u64,
    /// `(reason, count)` for every [`Dropped`].
    pub(crate) dropped: Vec<(&'static str, u64)>,
    /// Bytes read from peers.
    pub(crate) bytes_in: u64,
    /// Bytes sent to peers.
    pub(crate) bytes_out: u64,
    /// How long stream conversations lasted.
    pub(crate) duration: HistogramSnapshot,
    /// How long making an instance took.
    pub(crate) instantiation: HistogramSnapshot,
    /// TLS handshakes (all zero on other transports).
    pub(crate) handshakes: HandshakesSnapshot,
}

impl ListenerStats {
    fn new(transport: &'static str, address: String) -> ListenerStats {
        ListenerStats {
            transport,
            address,
            accepted: AtomicU64::new(0),
            active: AtomicU64::new(0),
            ended: Default::default(),
            refused: Default::default(),
            answered: AtomicU64::new(0),
            dropped: Default::default(),
            traffic: Arc::default(),
            duration: Histogram::new(CONNECTION_SECONDS),
            instantiation: Histogram::new(INSTANTIATION_SECONDS),
            handshakes: Handshakes::default(),
        }
    }

    /// Counts a conversation that starts now; it is open until the guard is dropped.
    pub(crate) fn started(self: &Arc<Self>) -> Open {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        Open { stats: self.clone(), since: Instant::now() }
    }

    /// Counts a conversation refused at admission.
    pub(crate) fn refused(&self, why: Refusal) {
        Counters::bump(&self.refused[why as usize]);
    }

    /// Counts a datagram the plugin answered, once its replies are sent and counted:
    /// the release pairs with [`snapshot`](Self::snapshot)'s acquire, so a snapshot that
    /// sees the datagram answered sees the bytes it was answered with.
    pub(crate) fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Release);
    }

    /// Counts a datagram (or a reply) dropped.
    pub(crate) fn dropped(&self, why: Dropped) {
        Counters::bump(&self.dropped[why as usize]);
    }

    /// How many datagrams were dropped for `why`.
    pub(crate) fn dropped_for(&self, why: Dropped) -> u64 {
        self.dropped[why as usize].load(Ordering::Relaxed)
    }

    /// Counts `n` bytes received from a peer outside a stream (a datagram).
    pub(crate) fn received(&self, n: usize) {
        self.traffic.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` bytes sent to a peer outside a stream (a reply datagram).
    pub(crate) fn sent(&self, n: usize) {
        self.traffic.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The current values.
    pub(crate) fn snapshot(&self) -> ListenerSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Acquired before the rest is read (see `Open::ended` and `answered`).
        let ended = Ended::ALL.iter().map(|e| (e.name(), self.ended[e.index()].load(Ordering::Acquire))).collect();
        let answered = self.answered.load(Ordering::Acquire);
        ListenerSnapshot {
            accepted: get(&self.accepted),
            active: get(&self.active),
            ended,
            refused: Refusal::ALL.iter().map(|r| (r.name(), get(&self.refused[*r as usize]))).collect(),
            answered,
            dropped: Dropped::ALL.iter().map(|d| (d.name(), get(&self.dropped[*d as usize]))).collect(),
            bytes_in: get(&self.traffic.received),
            bytes_out: get(&self.traffic.sent),
            duration: self.duration.snapshot(),
            instantiation: self.instantiation.snapshot(),
            handshakes: self.handshakes.snapshot(),
        }
    }
}

/// One open conversation of a listener (see [`ListenerStats::started`]); dropping it
/// closes the conversation in the counts.
#[derive(Debug)]
pub(crate) struct Open {
    stats: Arc<ListenerStats>,
    since: Instant,
}

impl Open {
    /// Closes the conversation in the counts: how long it lasted, that it is no longer
    /// active, and last how it ended. Called after everything else about the
    /// conversation is counted (its bytes, its outcome); the ending is released after
    /// the rest and [`ListenerStats::snapshot`] acquires it first, so a scrape that counts
    /// a conversation closed counts all of it.
    pub(crate) fn ended(self, how: Ended) {
        self.stats.duration.observe(self.since.elapsed());
        let stats = Arc::clone(&self.stats);
        drop(self);
        stats.ended[how.index()].fetch_add(1, Ordering::Release);
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::guest::traffic::Activity;

    #[test]
    fn a_listener_counts_open_ended_refused_and_bytes() {
        let counters = Counters::default();
        let stats = counters.listener("tcp", "127.0.0.1:1".into());
        assert!(Arc::ptr_eq(&stats, &counters.listener("tcp", "127.0.0.1:1".into())), "one handle per listener");
        let open = stats.started();
        assert_eq!(stats.snapshot().active, 1);
        Activity::counted(stats.traffic.clone()).received(5);
        open.ended(Ended::Remote);
        stats.refused(Refusal::PerIp);
        stats.dropped(Dropped::ReflectorPort);
        stats.dropped(Dropped::PluginFailed);
        let s = stats.snapshot();
        assert_eq!((s.accepted, s.active, s.bytes_in, s.duration.count), (1, 0, 5, 1));
        assert!(s.ended.contains(&("remote", 1)) && s.refused.contains(&("per_ip", 1)), "{s:?}");
        let total = counters.snapshot();
        assert_eq!((total.served, total.refused), (1, 2), "a failed plugin is no refusal");
    }
}
