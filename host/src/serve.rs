//! `switchboard serve`: load the plugins (the registry), follow their files (the watcher),
//! serve until shutdown, then drain.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, AdmissionConfig};
use crate::config::PluginConfig;
use crate::limits::Limits;
use crate::listen::{self, Listen};
use crate::plugin::{LoadError, Plugin, name_of};
use crate::registry::{Registry, Sources};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::service::{Ctx, Service};
use crate::watch;
use crate::{serial, session, tcp, udp};

/// Instance slots beyond the connection limit, for `describe()` calls.
const INSTANCE_HEADROOM: usize = 64;

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
    /// `--plugins DIR`: serve every `*.wasm` in it, and follow changes.
    pub plugins_dir: Option<PathBuf>,
    /// `--config FILE`: one table per plugin.
    pub config_file: Option<PathBuf>,
    /// How long in-flight connections may run after shutdown begins.
    pub drain_timeout: Duration,
    /// Limits on every connection.
    pub limits: Limits,
    /// Who may connect, and how many at once.
    pub admission: AdmissionConfig,
    /// Settings of every UDP listener (reply rate per peer).
    pub udp: udp::UdpOptions,
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
    #[error("no plugins to serve: give --plugin PATH, --plugins DIR or --config FILE")]
    NoPlugins,
    /// Two plugin files have the same name (file stem).
    #[error("two plugins are named {0:?} (plugin names are file stems): rename one of the files")]
    DuplicateName(String),
    /// A configuration file is unusable.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The plugins folder cannot be watched.
    #[error("cannot watch for plugin changes: {0}")]
    Watch(String),
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
    let sources = config.sources()?;
    // The pool holds every admitted connection's instance, plus room for describe() calls.
    let runtime = RuntimeOptions {
        max_instances: u32::try_from(config.admission.max_connections.saturating_add(INSTANCE_HEADROOM)).unwrap_or(u32::MAX),
        memory_limit: config.limits.memory,
        ..config.runtime.clone()
    };
    let rt = Runtime::new(runtime).map_err(|e| ServeError::Runtime(format!("{e:#}")))?;
    let ctx = Ctx { rt, admission: Admission::new(config.admission.clone()), force: CancellationToken::new(), tracker: TaskTracker::new() };
    let stop = CancellationToken::new();
    let registry = Registry::new(ctx.clone(), stop.clone(), sources, config.limits, config.udp, config.overrides())?;

    // Watch before the first load, so a change made while loading is not missed.
    let watching = watch::spawn(registry.clone(), stop.clone()).map_err(|e| ServeError::Watch(e.to_string()))?;
    // Plugins named on the command line must start; a bad one fails the start. Plugins
    // from the folder or the config file are rejected with a log line instead, like later
    // changes to them, and the server starts with the rest.
    for name in registry.names() {
        match registry.apply(&name).await {
            Ok(()) => {}
            Err(e) if registry.sources().is_file(&name) => return Err(e),
            Err(e) => tracing::error!(plugin = %name, "rejected: {e}"),
        }
    }
    if registry.services().await.is_empty() && registry.sources().dir.is_none() {
        return Err(ServeError::NoPlugins);
    }

    shutdown.await;
    tracing::info!(drain_timeout = ?config.drain_timeout, "shutting down: no new connections; draining");
    stop.cancel();
    drop(watching);
    ctx.tracker.close();
    if tokio::time::timeout(config.drain_timeout, ctx.tracker.wait()).await.is_err() {
        tracing::info!(open = ctx.tracker.len(), "drain timeout: closing the remaining connections");
        ctx.force.cancel();
        let _ = tokio::time::timeout(session::CLOSE_GRACE + Duration::from_secs(1), ctx.tracker.wait()).await;
    }
    for service in registry.services().await {
        let s = service.counters.snapshot();
        tracing::info!(
            plugin = %service.name(), served = s.served, errors = s.errors, traps = s.traps,
            limit_hits = s.limit_hits, refused = s.refused, "stopped"
        );
    }
    Ok(())
}

impl ServeConfig {
    /// Checks the plugin sources and the per-plugin flags against each other.
    fn sources(&self) -> Result<Sources, ServeError> {
        if self.plugins.is_empty() && self.plugins_dir.is_none() && self.config_file.is_none() {
            return Err(ServeError::NoPlugins);
        }
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for spec in &self.plugins {
            let name = name_of(&spec.path);
            if files.iter().any(|(n, _)| *n == name) {
                return Err(ServeError::DuplicateName(name));
            }
            // Later a vanished file means "remove the plugin"; at the start it is an error.
            std::fs::File::open(&spec.path).map_err(|e| ServeError::Load { path: spec.path.clone(), source: LoadError::Read(e) })?;
            files.push((name, spec.path.clone()));
        }
        if let Some(dir) = &self.plugins_dir
            && !dir.is_dir()
        {
            return Err(ServeError::BadDir { plugin: "--plugins".into(), path: dir.clone(), reason: "no such directory".into() });
        }
        // With a plugins folder or a config file, a flag may name a plugin that is not
        // there yet; otherwise it is a typo.
        if self.plugins_dir.is_none() && self.config_file.is_none() {
            let known = |k: &&String| files.iter().any(|(n, _)| n == *k);
            if let Some(unknown) = self.settings.keys().find(|k| !known(k)) {
                return Err(ServeError::UnknownPlugin("--set", unknown.clone()));
            }
            if let Some(unknown) = self.dirs.keys().find(|k| !known(k)) {
                return Err(ServeError::UnknownPlugin("--dir", unknown.clone()));
            }
        }
        for (plugin, path) in &self.dirs {
            if !path.is_dir() {
                let reason = if path.exists() { "not a directory" } else { "no such directory" };
                return Err(ServeError::BadDir { plugin: plugin.clone(), path: path.clone(), reason: reason.into() });
            }
        }
        Ok(Sources { files, dir: self.plugins_dir.clone(), config_file: self.config_file.clone() })
    }

    /// The command line's per-plugin settings, grants and listeners, as overrides.
    fn overrides(&self) -> BTreeMap<String, PluginConfig> {
        let mut out: BTreeMap<String, PluginConfig> = BTreeMap::new();
        for (name, pairs) in &self.settings {
            out.entry(name.clone()).or_default().settings.extend(pairs.iter().cloned());
        }
        for (name, dir) in &self.dirs {
            out.entry(name.clone()).or_default().dir = Some(dir.clone());
        }
        for spec in &self.plugins {
            if let Some(listen) = &spec.listen {
                out.entry(name_of(&spec.path)).or_default().listen = Some(listen.iter().map(Listen::to_string).collect());
            }
        }
        out
    }
}

/// A bound listener of any transport, not yet serving.
pub(crate) enum Bound {
    Tcp(TcpListener),
    Udp(udp::UdpListener),
    Serial(serial::SerialLine),
}

impl Bound {
    /// Prints the `listening NAME URL` line and starts serving `service` on it.
    /// Serving stops when `stop` is cancelled (the listener is dropped, so new
    /// connections are refused); connections already open finish.
    pub(crate) fn start(self, service: &Arc<Service>, ctx: &Ctx, stop: CancellationToken) {
        let url = match &self {
            Bound::Tcp(listener) => format!("tcp://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default()),
            Bound::Udp(socket) => format!("udp://{}", socket.local_addr().map(|a| a.to_string()).unwrap_or_default()),
            Bound::Serial(line) => format!("serial://{}", line.device()),
        };
        // Tests and scripts read these lines: one per listener, flushed at once.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening {} {url}", service.name());
        let _ = stdout.flush();
        let (service, task_ctx) = (service.clone(), ctx.clone());
        match self {
            Bound::Tcp(listener) => ctx.tracker.spawn(until_stopped(stop, tcp::run(listener, service, task_ctx))),
            Bound::Udp(socket) => ctx.tracker.spawn(until_stopped(stop, udp::run(socket, service, task_ctx))),
            // A serial line is one conversation: stopping its listener ends it.
            Bound::Serial(line) => ctx.tracker.spawn(until_stopped(stop, serial::run(line, service, task_ctx))),
        };
    }
}

/// Runs `serving` until it ends or `stop` is cancelled.
async fn until_stopped(stop: CancellationToken, serving: impl Future<Output = ()>) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = serving => {}
    }
}

/// Refuses a listener the plugin cannot serve: streams need a stream handler, datagrams
/// a datagram handler.
pub(crate) fn check_world(plugin: &Plugin, listen: &Listen) -> Result<(), ServeError> {
    let (ok, what, transport) = match listen {
        Listen::Tcp { .. } => (plugin.world.streams(), "stream handler (switchboard:plugin/handler)", "TCP"),
        Listen::Serial { .. } => (plugin.world.streams(), "stream handler (switchboard:plugin/handler)", "a serial line"),
        Listen::Udp { .. } => (plugin.world.datagrams(), "datagram handler (switchboard:plugin/datagram-handler)", "UDP"),
    };
    if ok {
        return Ok(());
    }
    Err(ServeError::Unsupported {
        plugin: plugin.name.to_string(),
        listen: listen.clone(),
        reason: format!("the plugin is a {} and exports no {what}, so it cannot serve {transport}", plugin.world.name()),
    })
}

/// Binds (or opens) one listener for `plugin`.
pub(crate) async fn bind(plugin: &Plugin, listen: Listen, udp_options: udp::UdpOptions) -> Result<Bound, ServeError> {
    check_world(plugin, &listen)?;
    let bind_error = |source| ServeError::Bind { plugin: plugin.name.to_string(), listen: listen.clone(), source };
    match &listen {
        Listen::Tcp { host, port } => tcp::bind(host, *port).await.map(Bound::Tcp).map_err(bind_error),
        Listen::Udp { host, port } => udp::bind(host, *port, udp_options).await.map(Bound::Udp).map_err(bind_error),
        Listen::Serial { device, baud } => serial::open(device, *baud).await.map(Bound::Serial).map_err(bind_error),
    }
}
