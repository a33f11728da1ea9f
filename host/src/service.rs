//! [`Service`]: one plugin being served. Its listeners read the *current* version for
//! each new connection, so replacing it ([`Service::swap`]) is atomic: connections
//! accepted afterwards run the new version, open ones keep the instance they started on.

use std::sync::{Arc, RwLock};

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
}

impl Service {
    /// A service for `plugin`, stopped by `parent` (or by [`Service::stop`]).
    pub fn new(plugin: Arc<Plugin>, parent: &CancellationToken) -> Arc<Service> {
        Arc::new(Service { name: plugin.name.clone(), current: RwLock::new(plugin), stop: parent.child_token() })
    }

    /// The plugin name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The version new connections get.
    pub fn current(&self) -> Arc<Plugin> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `plugin` the version new connections get; returns the previous one.
    pub fn swap(&self, plugin: Arc<Plugin>) -> Arc<Plugin> {
        std::mem::replace(&mut *self.current.write().unwrap_or_else(|e| e.into_inner()), plugin)
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
    /// Cancelled when the drain timeout runs out: open connections are closed.
    pub force: CancellationToken,
    /// Tracks every task, for the drain at shutdown.
    pub tracker: TaskTracker,
}
