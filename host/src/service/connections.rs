//! The connection table: every open conversation of one plugin (TCP and serial), with
//! what the operator wants to see of it and its [`Closer`], so the admin API can list it
//! and close it by id.
//!
//! The hot path pays one insert when a conversation starts and one remove when it ends,
//! each under the lock of one of [`SHARDS`] small maps (chosen by id), never a lock held
//! across anything else. The numbers shown (bytes, CPU) are read from the meters the
//! conversation keeps anyway ([`Meters`]), only when someone asks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;

use crate::guest::bindings::Transport;
use crate::guest::closer::Closer;
use crate::instance::meters::Meters;
use crate::instance::plugin::Plugin;

/// How many maps the table is split into (a power of two).
pub(crate) const SHARDS: usize = 16;

/// One open conversation.
pub(crate) struct Connection {
    /// Its id (the `id` plugins and log lines see).
    pub(crate) id: u64,
    /// The version it runs on.
    pub(crate) plugin: Arc<Plugin>,
    /// The peer's address (or the device path of a serial line).
    pub(crate) peer: String,
    /// How it arrived.
    pub(crate) transport: Transport,
    /// Whether it arrived on a `tls:` listener (its transport is then TCP).
    pub(crate) tls: bool,
    /// When it started, by the calendar.
    pub(crate) started: SystemTime,
    /// When it started, for its age.
    pub(crate) started_at: Instant,
    /// Ends it gracefully, as a limit would.
    pub(crate) closer: Closer,
    /// Its bytes and CPU so far.
    pub(crate) meters: Meters,
    /// Set once it runs (or is moving to) the heavy lane.
    heavy: OnceLock<Arc<AtomicBool>>,
}

impl Connection {
    /// A conversation starting now.
    pub(crate) fn new(id: u64, plugin: Arc<Plugin>, peer: String, (transport, tls): (Transport, bool), closer: Closer) -> Connection {
        Connection {
            id,
            plugin,
            peer,
            transport,
            tls,
            started: SystemTime::now(),
            started_at: Instant::now(),
            closer,
            meters: Meters::default(),
            heavy: OnceLock::new(),
        }
    }

    /// Follows `flag` for the lane it runs in (see `instance::lane`).
    pub(crate) fn follow_lane(&self, flag: Arc<AtomicBool>) {
        let _ = self.heavy.set(flag);
    }

    /// `heavy` once it runs in the heavy lane, else `light`.
    pub(crate) fn lane(&self) -> &'static str {
        match self.heavy.get() {
            Some(flag) if flag.load(Ordering::Relaxed) => "heavy",
            _ => "light",
        }
    }

    /// The transport's name: `tcp`, `tls`, `udp` or `serial`.
    pub(crate) fn transport_name(&self) -> &'static str {
        match self.transport {
            Transport::Tcp if self.tls => "tls",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Serial => "serial",
        }
    }
}

/// The open conversations of one plugin.
pub(crate) struct Connections {
    shards: [Mutex<HashMap<u64, Arc<Connection>>>; SHARDS],
}

impl Default for Connections {
    fn default() -> Self {
        Connections { shards: std::array::from_fn(|_| Mutex::new(HashMap::new())) }
    }
}

impl Connections {
    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Arc<Connection>>> {
        &self.shards[(id as usize) & (SHARDS - 1)]
    }

    /// Adds `connection`.
    pub(crate) fn insert(&self, connection: Arc<Connection>) {
        self.shard(connection.id).lock().insert(connection.id, connection);
    }

    /// Removes the connection `id`.
    pub(crate) fn remove(&self, id: u64) {
        self.shard(id).lock().remove(&id);
    }

    /// The open connection `id`, if it is one of these.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Connection>> {
        self.shard(id).lock().get(&id).cloned()
    }

    /// Every open connection, by id.
    pub(crate) fn list(&self) -> Vec<Arc<Connection>> {
        let mut all: Vec<Arc<Connection>> = self.shards.iter().flat_map(|s| s.lock().values().cloned().collect::<Vec<_>>()).collect();
        all.sort_by_key(|c| c.id);
        all
    }
}
