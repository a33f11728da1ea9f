//! [`Service`]: one plugin being served. Its listeners read the *current* version for
//! each new connection, so replacing it ([`Service::swap`]) is atomic: connections
//! accepted afterwards run the new version, open ones keep the instance they started on.

use std::sync::{Arc, RwLock};

use crate::admission::PluginGate;
use crate::bindings::ConnectionInfo;
use crate::lane::{Conduct, QUARANTINE};
use crate::limits::LimitHit;
use crate::metrics::Counters;
use crate::session::Outcome;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::plugin::Plugin;
use crate::runtime::Runtime;

/// A served plugin.
pub struct Service {
    name: Arc<str>,
    current: RwLock<Arc<Plugin>>,
    /// Cancelled when the service stops accepting (plugin removed, or shutdown).
    stop: CancellationToken,
    /// How connections ended or were refused.
    pub counters: Counters,
    /// The plugin's own connection limit.
    pub gate: Arc<PluginGate>,
    /// Whether it misbehaved lately (its new connections then start in the heavy lane).
    pub conduct: Conduct,
}

impl Service {
    /// A service for `plugin` admitting at most `max_connections` at once (0 = only the
    /// global limit), stopped by `parent` (or by [`Service::stop`]).
    pub fn new(plugin: Arc<Plugin>, max_connections: usize, parent: &CancellationToken) -> Arc<Service> {
        Arc::new(Service {
            name: plugin.name.clone(),
            current: RwLock::new(plugin),
            stop: parent.child_token(),
            counters: Counters::default(),
            gate: PluginGate::new(max_connections),
            conduct: Conduct::default(),
        })
    }

    /// Counts how a connection ended and logs failures (rate-limited, so a flood of
    /// failing connections cannot flood the log).
    pub fn account(&self, info: &ConnectionInfo, outcome: &Outcome) {
        let c = &self.counters;
        let counter = match outcome {
            Outcome::Ok | Outcome::Closed(_) => None,
            Outcome::Err(_) => Some(&c.errors),
            Outcome::Trap(_) | Outcome::Failed(_) => Some(&c.traps),
            Outcome::Limit(..) => Some(&c.limit_hits),
        };
        let Some(counter) = counter else {
            if let Outcome::Closed(reason) = outcome {
                tracing::debug!(plugin = %self.name, id = info.id, peer = %info.peer, %reason, "closed by the host");
            }
            return;
        };
        Counters::bump(counter);
        if matches!(outcome, Outcome::Trap(_) | Outcome::Limit(LimitHit::Cpu | LimitHit::Memory, _)) && self.conduct.misbehaved() {
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

    /// Counts and logs (rate-limited) a connection refused at admission.
    pub fn refused(&self, peer: std::net::SocketAddr, reason: &str) {
        Counters::bump(&self.counters.refused);
        if let Some(suppressed) = self.counters.may_log() {
            tracing::info!(plugin = %self.name, %peer, suppressed, "connection refused: {reason}");
        }
    }

    /// The plugin name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The version new connections get.
    pub fn current(&self) -> Arc<Plugin> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `plugin` the version new connections get; returns the previous one. The
    /// new version starts with a clean record.
    pub fn swap(&self, plugin: Arc<Plugin>) -> Arc<Plugin> {
        self.conduct.forgive();
        std::mem::replace(&mut *self.current.write().unwrap_or_else(|e| e.into_inner()), plugin)
    }

    /// A stop token for one of its listeners (cancelled with the service, or alone).
    pub fn listener_token(&self) -> CancellationToken {
        self.stop.child_token()
    }

    /// Stops accepting on all of this service's listeners; open connections finish.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Resolves when the service stops accepting.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }
}

/// What every listener task needs from the server.
#[derive(Clone)]
pub struct Ctx {
    /// The runtime.
    pub rt: Arc<Runtime>,
    /// Who may connect, and how many at once.
    pub admission: Arc<crate::admission::Admission>,
    /// Cancelled when the drain timeout runs out: open connections are closed.
    pub force: CancellationToken,
    /// Tracks every task, for the drain at shutdown.
    pub tracker: TaskTracker,
}
