//! [`Activity`]: a connection's traffic clock. Its streams stamp every byte they move, the
//! epoch callback stamps every tick its plugin runs through (a running plugin is not
//! idle), and the session's watchdog reads it for the idle timeout. Bytes are also added
//! to its listener's [`Traffic`] as they move, for the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::clock::coarse_clock;

/// Bytes moved by all the connections of one listener, each way.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes read from peers.
    pub received: AtomicU64,
    /// Bytes the peers took.
    pub sent: AtomicU64,
}

/// When a connection was last active (moved a byte, or its plugin ran), and how many
/// bytes it moved each way; shared by its streams, its watchdog, the epoch callback and
/// the connection table.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// [`coarse_clock`] at the start: every read and write touches the clock, and the
    /// idle timeout needs no finer steps than its 1–4 ms.
    start_coarse: u64,
    /// The last activity, coarse nanoseconds after the start.
    last: AtomicU64,
    /// Bytes read from the peer.
    received: AtomicU64,
    /// Bytes the peer took.
    sent: AtomicU64,
    /// The peer ended its side (end of file, or a reset) before anything else did.
    peer_ended: AtomicBool,
    /// The listener's totals, when it keeps them.
    totals: Option<Arc<Traffic>>,
    /// The plugin yielded at an epoch tick and waits for a core: it is running, not idle,
    /// however long a loaded machine keeps it waiting.
    yielded: AtomicU32,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Arc<Activity> {
        Self::starting(None)
    }

    /// Activity starting now whose bytes are also added to `totals`.
    pub fn counted(totals: Arc<Traffic>) -> Arc<Activity> {
        Self::starting(Some(totals))
    }

    fn starting(totals: Option<Arc<Traffic>>) -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            start_coarse: coarse_clock(),
            last: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            peer_ended: AtomicBool::new(false),
            totals,
            yielded: AtomicU32::new(0),
        })
    }

    /// Records activity now.
    pub fn touch(&self) {
        self.last.store(coarse_clock().saturating_sub(self.start_coarse), Ordering::Relaxed);
    }

    /// Records `n` bytes read from the peer now.
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(totals) = &self.totals {
            totals.received.fetch_add(n as u64, Ordering::Relaxed);
        }
        self.touch();
    }

    /// Records `n` bytes the peer took now.
    pub fn sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(totals) = &self.totals {
            totals.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        self.touch();
    }

    /// Records that the peer ended its side of the connection (end of file or an error).
    pub fn peer_ended(&self) {
        self.peer_ended.store(true, Ordering::Relaxed);
    }

    /// Whether the peer ended its side of the connection.
    pub fn ended_by_peer(&self) -> bool {
        self.peer_ended.load(Ordering::Relaxed)
    }

    /// The plugin yielded at an epoch tick and waits to run again, until the guard is
    /// dropped (its resumption counts as activity).
    pub fn yielded(self: &Arc<Self>) -> WaitingForCore {
        self.yielded.fetch_add(1, Ordering::Relaxed);
        WaitingForCore(self.clone())
    }

    /// Whether the plugin is waiting for a core after a yield.
    pub fn waiting_for_core(&self) -> bool {
        self.yielded.load(Ordering::Relaxed) > 0
    }

    /// Bytes moved so far, both ways.
    pub fn bytes(&self) -> u64 {
        self.bytes_in() + self.bytes_out()
    }

    /// Bytes read from the peer so far.
    pub fn bytes_in(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Bytes the peer took so far.
    pub fn bytes_out(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The instant of the last traffic (or the start).
    pub fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    /// When the connection started.
    pub fn started(&self) -> Instant {
        self.start
    }
}

/// A plugin's wait for a core after a yield, from [`Activity::yielded`].
pub struct WaitingForCore(Arc<Activity>);

impl Drop for WaitingForCore {
    fn drop(&mut self) {
        self.0.yielded.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}
