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

use crate::bindings::{ConnectionInfo, Role, Transport};
use crate::cache::Origin;
use crate::closer::Closer;
use crate::grants::{DirGrant, Grants, Stdio};
use crate::listen::{self, Listen};
use crate::plugin::{LoadError, Plugin, name_of};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::session;

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
        for listen in listens {
            bound.push((plugin.clone(), bind(&plugin, listen).await?));
        }
    }

    let stop = CancellationToken::new();
    let force = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut stdout = std::io::stdout().lock();
    for (plugin, listener) in bound {
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            plugin: plugin.name.to_string(),
            listen: Listen::Tcp { host: String::new(), port: 0 },
            source,
        })?;
        // Tests and scripts read these lines: one per listener, flushed at once.
        let _ = writeln!(stdout, "listening {} tcp://{addr}", plugin.name);
        let _ = stdout.flush();
        tracker.spawn(accept_loop(rt.clone(), plugin, listener, stop.clone(), force.clone(), tracker.clone()));
    }
    drop(stdout);

    shutdown.await;
    tracing::info!(drain_timeout = ?config.drain_timeout, "shutting down: no new connections; draining");
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(config.drain_timeout, tracker.wait()).await.is_err() {
        tracing::info!(open = tracker.len(), "drain timeout: closing the remaining connections");
        force.cancel();
        let _ = tokio::time::timeout(session::CLOSE_GRACE + Duration::from_secs(1), tracker.wait()).await;
    }
    Ok(())
}

async fn bind(plugin: &Plugin, listen: Listen) -> Result<TcpListener, ServeError> {
    let unsupported = |reason: &str| ServeError::Unsupported {
        plugin: plugin.name.to_string(),
        listen: listen.clone(),
        reason: reason.to_string(),
    };
    match &listen {
        Listen::Tcp { host, port } => {
            if !plugin.world.streams() {
                return Err(unsupported(&format!(
                    "the plugin is a {} and exports no stream handler (switchboard:plugin/handler), so it cannot serve TCP",
                    plugin.world.name()
                )));
            }
            TcpListener::bind((host.as_str(), *port)).await.map_err(|source| ServeError::Bind {
                plugin: plugin.name.to_string(),
                listen: listen.clone(),
                source,
            })
        }
        Listen::Udp { .. } => Err(unsupported("UDP listeners are not available in this version of switchboard")),
        Listen::Serial { .. } => Err(unsupported("serial listeners are not available in this version of switchboard")),
    }
}

/// Accepts until `stop`; each connection runs as its own task on a fresh instance.
async fn accept_loop(
    rt: Arc<Runtime>,
    plugin: Arc<Plugin>,
    listener: TcpListener,
    stop: CancellationToken,
    force: CancellationToken,
    tracker: TaskTracker,
) {
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(conn) => {
                backoff = Duration::from_millis(5);
                conn
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: back off instead of spinning; never stop.
                tracing::warn!(plugin = %plugin.name, "accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let info = ConnectionInfo {
            id: rt.next_conn_id(),
            transport: Transport::Tcp,
            role: Role::Accepted,
            peer: peer.to_string(),
            local: local.clone(),
        };
        let closer = Closer::new();
        let (reader, writer) = socket.into_split();
        let (rt, plugin, force) = (rt.clone(), plugin.clone(), force.clone());
        tracker.spawn(async move {
            let close_on_force = {
                let closer = closer.clone();
                async move {
                    force.cancelled().await;
                    closer.close("the server is shutting down");
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                _ = session::run_stream(&rt, &plugin, info, reader, writer, closer) => {}
                () = close_on_force => {}
            }
        });
    }
}
