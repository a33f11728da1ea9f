//! `switchboard serve`: load the plugins, bind their listeners, accept connections until
//! shutdown, then drain.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::Origin;
use crate::grants::{DirGrant, Grants, Stdio};
use crate::listen::{self, Listen};
use crate::plugin::{LoadError, Plugin, name_of};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::service::{Ctx, Service};
use crate::{session, tcp};

/// One `--plugin PATH[@LISTEN,...]`.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The component file.
    pub path: PathBuf,
    /// Where to serve it; `None` means the plugin's `describe().listen`.
    pub listen: Option<Vec<Listen>>,
}

/// Everything `serve` needs.
#[derive(Debug, Clone, Default)]
pub struct ServeConfig {
    /// The plugins to serve.
    pub plugins: Vec<PluginSpec>,
    /// Settings (environment variables) per plugin name.
    pub settings: HashMap<String, Vec<(String, String)>>,
    /// Read-only directory grants per plugin name (`--dir NAME=PATH`).
    pub dirs: HashMap<String, PathBuf>,
    /// How long in-flight connections may run after shutdown begins.
    pub drain_timeout: Duration,
    /// Runtime sizing.
    pub runtime: RuntimeOptions,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The runtime could not be built.
    #[error("cannot start the WebAssembly runtime: {0}")]
    Runtime(String),
    /// No plugin was given.
    #[error("no plugins to serve: give at least one --plugin PATH")]
    NoPlugins,
    /// Two plugin files have the same name (file stem).
    #[error("two plugins are named {0:?} (plugin names are file stems): rename one of the files")]
    DuplicateName(String),
    /// A `--set` or `--dir` names a plugin that is not being served.
    #[error("{0}: there is no plugin named {1:?} (plugin names are file stems)")]
    UnknownPlugin(&'static str, String),
    /// A `--dir` path is not a directory.
    #[error("--dir {plugin}={}: {reason}", path.display())]
    BadDir {
        /// Plugin name.
        plugin: String,
        /// The path given.
        path: PathBuf,
        /// Why it cannot be granted.
        reason: String,
    },
    /// A plugin file did not load.
    #[error("{path}: {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        source: LoadError,
    },
    /// A plugin's own `describe().listen` is not a listener address.
    #[error("plugin {plugin}: its describe().listen has {source}")]
    DefaultListen {
        /// Plugin name.
        plugin: String,
        /// The parse error.
        source: listen::ListenError,
    },
    /// A plugin has nowhere to listen.
    #[error("plugin {0}: no listeners: give PATH@LISTEN (its describe().listen is empty)")]
    NoListeners(String),
    /// A listener the plugin cannot serve, or this host does not offer yet.
    #[error("plugin {plugin} on {listen}: {reason}")]
    Unsupported {
        /// Plugin name.
        plugin: String,
        /// The listener.
        listen: Listen,
        /// Why.
        reason: String,
    },
    /// Binding failed.
    #[error("plugin {plugin}: cannot listen on {listen}: {source}")]
    Bind {
        /// Plugin name.
        plugin: String,
        /// The listener.
        listen: Listen,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Serves until `shutdown` resolves, then stops accepting and drains.
///
/// For every bound listener prints `listening NAME tcp://ADDR` to stdout.
pub async fn serve(config: ServeConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    if config.plugins.is_empty() {
        return Err(ServeError::NoPlugins);
    }
    let names: Vec<String> = config.plugins.iter().map(|p| name_of(&p.path)).collect();
    if let Some(dup) = names.iter().enumerate().find_map(|(i, n)| names[..i].contains(n).then_some(n)) {
        return Err(ServeError::DuplicateName(dup.clone()));
    }
    if let Some(unknown) = config.settings.keys().find(|k| !names.contains(k)) {
        return Err(ServeError::UnknownPlugin("--set", unknown.clone()));
    }
    if let Some(unknown) = config.dirs.keys().find(|k| !names.contains(k)) {
        return Err(ServeError::UnknownPlugin("--dir", unknown.clone()));
    }
    for (plugin, path) in &config.dirs {
        if !path.is_dir() {
            let reason = if path.exists() { "not a directory" } else { "no such directory" };
            return Err(ServeError::BadDir { plugin: plugin.clone(), path: path.clone(), reason: reason.into() });
        }
    }
    let rt = Runtime::new(config.runtime.clone()).map_err(|e| ServeError::Runtime(format!("{e:#}")))?;

    // Everything is loaded and bound before anything is served: a bad plugin or a busy
    // port fails the start, not a half-running server.
    let stop = CancellationToken::new();
    let mut bound = Vec::new();
    for spec in &config.plugins {
        let name = name_of(&spec.path);
        let grants = Grants {
            env: config.settings.get(&name).cloned().unwrap_or_default(),
            dir: config.dirs.get(&name).map(|host| DirGrant { host: host.clone(), writable: false }),
            stdio: Stdio::Log,
        };
        let plugin = Plugin::load(&rt, &spec.path, grants)
            .await
            .map_err(|source| ServeError::Load { path: spec.path.clone(), source })?;
        tracing::info!(
            plugin = %plugin.name, version = %plugin.info.version, hash = &plugin.sha256[..12],
            world = plugin.world.name(), compile_ms = plugin.compile_time.as_millis() as u64,
            cached = plugin.origin == Origin::Cached, "loaded"
        );
        let plugin = Arc::new(plugin);
        let listens = match &spec.listen {
            Some(listens) => listens.clone(),
            None => plugin
                .info
                .listen
                .iter()
                .map(|l| l.parse())
                .collect::<Result<Vec<Listen>, _>>()
                .map_err(|source| ServeError::DefaultListen { plugin: plugin.name.to_string(), source })?,
        };
        if listens.is_empty() {
            return Err(ServeError::NoListeners(plugin.name.to_string()));
        }
        let service = Service::new(plugin.clone(), &stop);
        for listen in listens {
            bound.push((service.clone(), bind(&plugin, listen).await?));
        }
    }

    let ctx = Ctx { rt: rt.clone(), force: CancellationToken::new(), tracker: TaskTracker::new() };
    for (service, listener) in bound {
        listener.start(&service, &ctx);
    }

    shutdown.await;
    tracing::info!(drain_timeout = ?config.drain_timeout, "shutting down: no new connections; draining");
    stop.cancel();
    ctx.tracker.close();
    if tokio::time::timeout(config.drain_timeout, ctx.tracker.wait()).await.is_err() {
        tracing::info!(open = ctx.tracker.len(), "drain timeout: closing the remaining connections");
        ctx.force.cancel();
        let _ = tokio::time::timeout(session::CLOSE_GRACE + Duration::from_secs(1), ctx.tracker.wait()).await;
    }
    Ok(())
}

/// A bound listener of any transport, not yet serving.
enum Bound {
    Tcp(TcpListener),
}

impl Bound {
    /// Prints the `listening NAME URL` line and starts serving `service` on it.
    fn start(self, service: &Arc<Service>, ctx: &Ctx) {
        let url = match &self {
            Bound::Tcp(listener) => format!("tcp://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default()),
        };
        // Tests and scripts read these lines: one per listener, flushed at once.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening {} {url}", service.name());
        let _ = stdout.flush();
        let (service, task_ctx) = (service.clone(), ctx.clone());
        match self {
            Bound::Tcp(listener) => ctx.tracker.spawn(tcp::run(listener, service, task_ctx)),
        };
    }
}

async fn bind(plugin: &Plugin, listen: Listen) -> Result<Bound, ServeError> {
    let unsupported = |reason: &str| ServeError::Unsupported {
        plugin: plugin.name.to_string(),
        listen: listen.clone(),
        reason: reason.to_string(),
    };
    let bind_error = |source| ServeError::Bind { plugin: plugin.name.to_string(), listen: listen.clone(), source };
    match &listen {
        Listen::Tcp { host, port } => {
            if !plugin.world.streams() {
                return Err(unsupported(&format!(
                    "the plugin is a {} and exports no stream handler (switchboard:plugin/handler), so it cannot serve TCP",
                    plugin.world.name()
                )));
            }
            tcp::bind(host, *port).await.map(Bound::Tcp).map_err(bind_error)
        }
        Listen::Udp { .. } => Err(unsupported("UDP listeners are not available in this version of switchboard")),
        Listen::Serial { .. } => Err(unsupported("serial listeners are not available in this version of switchboard")),
    }
}
