//! [`Service`]: one plugin being served. Its listeners read the *current* version for
//! each new connection, so replacing it ([`Service::swap`]) is atomic: connections
//! accepted afterwards run the new version, open ones keep the instance they started on.

pub(crate) mod accounting;
pub(crate) mod connections;
pub(crate) mod endings;
pub(crate) mod handshakes;

use std::sync::Arc;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::admission::{PluginGate, Refusal};
use crate::guest::bindings::ConnectionInfo;
use crate::guest::closer::Closer;
use crate::instance::LimitHit;
use crate::instance::lane::{LaneMoves, QUARANTINE, Quarantine};
use crate::instance::plugin::Plugin;
use crate::session::Outcome;
use crate::session::record::RecordDir;
use accounting::{Counters, ListenerStats};
use connections::{Connection, Connections};
use handshakes::HandshakeFailure;

/// A served plugin.
pub(crate) struct Service {
    name: Arc<str>,
    current: RwLock<Arc<Plugin>>,
    /// Cancelled when the service stops accepting (plugin removed, or shutdown).
    stop: CancellationToken,
    /// How connections ended or were refused.
    pub(crate) counters: Counters,
    /// The plugin's own connection limit.
    pub(crate) gate: Arc<PluginGate>,
    /// Whether it misbehaved lately (its new connections then start in the heavy lane).
    pub(crate) quarantine: Quarantine,
    /// How many of its connections went to the heavy lane.
    pub(crate) lane_moves: Arc<LaneMoves>,
    /// Its open conversations.
    pub(crate) connections: Connections,
    /// Where its plugin's `record` setting records each TCP connection, if it has one.
    record: RwLock<Option<RecordDir>>,
    /// The line a refused TCP client gets before the close (`busy` in its config).
    busy: RwLock<Option<bytes::Bytes>>,
    /// Whether its TCP and TLS listeners expect a PROXY header first.
    proxy_protocol: std::sync::atomic::AtomicBool,
}

/// Keeps a conversation in its service's connection table until dropped.
pub(crate) struct Registered {
    service: Arc<Service>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.service.connections.remove(self.id);
    }
}

impl Service {
    /// A service for `plugin` admitting at most `max_connections` at once (0 = only the
    /// global limit), stopped by `parent` (or by [`Service::stop`]).
    pub(crate) fn new(plugin: Arc<Plugin>, max_connections: usize, parent: &CancellationToken) -> Arc<Service> {
        Arc::new(Service {
            name: plugin.name.clone(),
            current: RwLock::new(plugin),
            stop: parent.child_token(),
            counters: Counters::default(),
            gate: PluginGate::new(max_connections),
            quarantine: Quarantine::default(),
            lane_moves: Arc::default(),
            connections: Connections::default(),
            record: RwLock::new(None),
            proxy_protocol: Default::default(),
            busy: RwLock::new(None),
        })
    }

    /// Where new connections are recorded by the plugin's own `record` setting.
    pub(crate) fn record(&self) -> Option<RecordDir> {
        self.record.read().clone()
    }

    /// The line a TCP client refused at admission gets before the close, if any.
    pub(crate) fn busy(&self) -> Option<bytes::Bytes> {
        self.busy.read().clone()
    }

    /// Sets (or clears) the line refused TCP clients get.
    pub(crate) fn set_busy(&self, line: Option<&str>) {
        *self.busy.write() = line.map(|l| bytes::Bytes::copy_from_slice(l.as_bytes()));
    }

    /// Whether new TCP and TLS connections start with a PROXY header.
    pub(crate) fn proxy_protocol(&self) -> bool {
        self.proxy_protocol.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets whether new TCP and TLS connections start with a PROXY header.
    pub(crate) fn set_proxy_protocol(&self, on: bool) {
        self.proxy_protocol.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets (or clears) where new connections are recorded.
    pub(crate) fn set_record(&self, record: Option<RecordDir>) {
        *self.record.write() = record;
    }

    /// Enters a conversation starting now into the connection table; it leaves the table
    /// when the returned guard is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        info: &ConnectionInfo,
        plugin: &Arc<Plugin>,
        closer: &Closer,
        tls: bool,
    ) -> (Arc<Connection>, Registered) {
        let transport = (info.transport, tls);
        let connection = Arc::new(Connection::new(info.id, plugin.clone(), info.peer.clone(), transport, closer.clone()));
        self.connections.insert(connection.clone());
        (connection, Registered { service: self.clone(), id: info.id })
    }

    /// Counts how a connection ended and logs failures (rate-limited, so a flood of
    /// failing connections cannot flood the log).
    pub(crate) fn account(&self, info: &ConnectionInfo, outcome: &Outcome) {
        let c = &self.counters;
        let counter = match outcome {
            Outcome::Ok | Outcome::Closed(_) => None,
            Outcome::Err(_) => Some(&c.errors),
            Outcome::Trap(_) => Some(&c.traps),
            Outcome::Failed(_) => Some(&c.host_failures),
            Outcome::Limit(..) => Some(&c.limit_hits),
        };
        let Some(counter) = counter else {
            if let Outcome::Closed(reason) = outcome {
                tracing::debug!(plugin = %self.name, id = info.id, peer = %info.peer, %reason, "closed by the host");
            }
            return;
        };
        Counters::bump(counter);
        if matches!(outcome, Outcome::Trap(_) | Outcome::Limit(LimitHit::Cpu | LimitHit::Memory, _)) && self.quarantine.begin() {
            tracing::info!(plugin = %self.name, "the plugin misbehaved: its new connections run in the heavy lane for {QUARANTINE:?}");
        }
        let Some(suppressed) = c.may_log() else { return };
        let (plugin, id, peer) = (&self.name, info.id, &info.peer);
        match outcome {
            Outcome::Err(msg) => tracing::info!(%plugin, id, %peer, suppressed, error = %msg, "plugin returned an error"),
            Outcome::Trap(msg) => tracing::warn!(%plugin, id, %peer, suppressed, "plugin trapped: {msg}"),
            Outcome::Failed(msg) => tracing::error!(%plugin, id, %peer, suppressed, "cannot start the plugin: {msg}"),
            Outcome::Limit(hit, msg) => {
                tracing::warn!(%plugin, id, %peer, suppressed, limit = hit.name(), "connection ended by a limit: {msg}")
            }
            Outcome::Ok | Outcome::Closed(_) => {}
        }
    }

    /// Counts (on its listener's `stats`) and logs (rate-limited) a connection refused
    /// at admission.
    pub(crate) fn refused(&self, stats: &ListenerStats, peer: &dyn std::fmt::Display, refusal: Refusal) {
        stats.refused(refusal);
        if let Some(suppressed) = self.counters.may_log() {
            tracing::info!(plugin = %self.name, %peer, suppressed, "connection refused: {}", refusal.reason());
        }
    }

    /// Logs a failed TLS handshake (rate-limited, like failures; it is counted by the
    /// listener).
    pub(crate) fn handshake_failed(&self, info: &ConnectionInfo, why: HandshakeFailure, detail: &str) {
        if let Some(suppressed) = self.counters.may_log() {
            let (plugin, id, peer) = (&self.name, info.id, &info.peer);
            tracing::info!(%plugin, id, %peer, suppressed, reason = %why.name(), "tls handshake failed: {detail}");
        }
    }

    /// The plugin name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The version new connections get.
    pub(crate) fn current(&self) -> Arc<Plugin> {
        self.current.read().clone()
    }

    /// Makes `plugin` the version new connections get; returns the previous one. The
    /// new version starts with a clean record.
    pub(crate) fn swap(&self, plugin: Arc<Plugin>) -> Arc<Plugin> {
        self.quarantine.end();
        std::mem::replace(&mut *self.current.write(), plugin)
    }

    /// A stop token for one of its listeners (cancelled with the service, or alone).
    pub(crate) fn listener_token(&self) -> CancellationToken {
        self.stop.child_token()
    }

    /// Stops accepting on all of this service's listeners; open connections finish.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// Resolves when the service stops accepting.
    pub(crate) async fn stopped(&self) {
        self.stop.cancelled().await
    }
}
