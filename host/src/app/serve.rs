//! `switchboard serve`: check the configuration, start the registry and the watcher,
//! serve until shutdown, then drain.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::app::admin::{self, AdminError};
use crate::app::systemd;
use crate::config::{ConfigError, HubBackend, PluginConfig, RedisHub, ServeConfig, TlsConfig, defaults, name_of, not_a_directory};
use crate::control::registry::Registry;
use crate::control::sources::Sources;
use crate::control::{ReloadError, watch};
use crate::guest::hub::{BackplaneError, Hub, HubLimits};
use crate::instance::LoadError;
use crate::instance::cache::ArtifactCache;
use crate::instance::capacity::{self, CapacityError, KernelLimits};
use crate::instance::runtime::{Runtime, RuntimeOptions};
use crate::listener::{BindOptions, Shared, SocketOptions};
use crate::session::record::Recorders;
use crate::session::stream::CLOSE_GRACE;
use crate::util::error::Chain;

/// How long open conversations go on after the drain starts before they are told of it
/// (their input ends): a request already on its way is answered as before.
pub const DRAIN_NOTICE: Duration = Duration::from_secs(1);

/// Instance slots beyond the connection limit, for `describe()` calls.
const INSTANCE_HEADROOM: usize = 64;

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runtime could not be built.
    #[error("cannot start the WebAssembly runtime")]
    Runtime(#[source] anyhow::Error),
    /// The kernel's limits cannot hold the connections asked for.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// `--user` cannot be honoured.
    #[error(transparent)]
    Privileges(#[from] crate::app::privileges::PrivilegeError),
    /// No plugin was given.
    #[error("no plugins to serve: give --plugin PATH, --plugins DIR or --config FILE")]
    NoPlugins,
    /// Two plugin files have the same name (file stem).
    #[error("two plugins are named {0:?} (plugin names are file stems): rename one of the files")]
    DuplicateName(String),
    /// A configuration file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The `--record` directory cannot be created.
    #[error("--record {}: cannot create the directory", path.display())]
    Record {
        /// The directory given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin folders cannot be watched.
    #[error("cannot watch for plugin changes")]
    Watch(#[source] notify::Error),
    /// A `--set`, `--dir` or `--tls` names a plugin that is not being served.
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
        reason: &'static str,
    },
    /// The `--plugins` folder is not a directory.
    #[error("--plugins {}: {reason}", path.display())]
    PluginsDir {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be served.
        reason: &'static str,
    },
    /// A `--plugin` file cannot be opened.
    #[error("{}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// A plugin named on the command line did not start.
    #[error(transparent)]
    Plugin(#[from] ReloadError),
    /// The admin endpoint cannot start.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The hub's backplane (`--hub`) cannot start.
    #[error(transparent)]
    Hub(#[from] BackplaneError),
}

/// What a signal asks of a running server; the binary maps SIGHUP and SIGUSR1 here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Re-read `--config`, every sidecar and every plugin file now (SIGHUP, what
    /// `systemctl reload` sends).
    Reload,
    /// Write the status (plugins, counters, open connections) to the log (SIGUSR1).
    Status,
}

/// Serves until `shutdown` resolves, then stops accepting and drains; `signals` asks
/// for a reload or a status report meanwhile.
///
/// For every bound listener prints `listening NAME tcp://ADDR` to stdout, and
/// `watching PATH` for the plugins folder and the config file it follows.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    signals: tokio::sync::mpsc::UnboundedReceiver<Signal>,
) -> Result<(), StartError> {
    let mut config = config;
    if let Some(path) = &config.config_file {
        // The command line wins over the file's [serve] table.
        let table = crate::config::file::read_serve_table(path)?;
        config.admin = config.admin.or(table.admin);
        config.reuse_port |= table.reuse_port.unwrap_or(false);
        config.ipv6_only |= table.ipv6_only.unwrap_or(false);
        if let (HubBackend::InProcess, Some(url)) = (&config.hub, table.hub) {
            let prefix = table.hub_prefix.unwrap_or_else(|| defaults::HUB_PREFIX.to_string());
            config.hub = HubBackend::Redis(RedisHub { url, prefix });
        }
    }
    // Looked up before anything is bound: a typo fails the start at once.
    let user = config.user.as_deref().map(crate::app::privileges::Target::lookup).transpose()?;
    let sources = sources(&config)?;
    // The pool holds every admitted connection's instance, plus room for describe() calls.
    let runtime = RuntimeOptions {
        max_instances: u32::try_from(config.admission.max_connections.saturating_add(INSTANCE_HEADROOM)).unwrap_or(u32::MAX),
        memory_limit: config.limits.memory,
        cache: ArtifactCache::from_config(&config.cache),
        // Redis may be down now: the hub connects in the background and serves local
        // rooms meanwhile.
        hub: Hub::start(HubLimits::default(), &config.hub)?,
        ..RuntimeOptions::default()
    };
    let connections = config.admission.max_connections as u64;
    let layout = capacity::plan(u64::from(runtime.max_instances), connections, KernelLimits::read())?;
    layout.log(connections);
    let runtime = RuntimeOptions { memory_images: layout.memory_images, ..runtime };
    let rt = Runtime::new(runtime).map_err(|e| StartError::Runtime(e.into()))?;
    let recorders = Recorders::default();
    let shared = Shared {
        rt,
        admission: Admission::new(config.admission.clone()),
        draining: CancellationToken::new(),
        close_all: CancellationToken::new(),
        tracker: TaskTracker::new(),
        record: match &config.record {
            Some(path) => Some(recorders.get(path).map_err(|source| StartError::Record { path: path.clone(), source })?),
            None => None,
        },
        recorders,
        proxy_from: config.proxy_from.clone().into(),
    };
    let stop = CancellationToken::new();
    let registry = Registry::new(
        shared.clone(),
        stop.clone(),
        sources,
        config.limits,
        BindOptions { udp: config.udp, socket: SocketOptions { reuse_port: config.reuse_port, ipv6_only: config.ipv6_only } },
        overrides(&config),
    )?;

    // Up before the plugins load, so /readyz says 503 while they do.
    let drain_requested = CancellationToken::new();
    if let Some(addr) = config.admin {
        admin::start(addr, &config.admin_options, registry.clone(), stop.clone(), drain_requested.clone()).await?;
    }
    // Watch before the first load, so a change made while loading is not missed.
    let watching = watch::spawn(registry.clone(), stop.clone()).map_err(StartError::Watch)?;
    for path in config.plugins_dir.iter().chain(config.config_file.iter()) {
        say(&format!("watching {}", path.display()));
    }
    // Plugins named on the command line must start; a bad one fails the start. Plugins
    // from the folder or the config file are rejected with a log line instead, like later
    // changes to them, and the server starts with the rest.
    let mut rejected = Vec::new();
    for name in registry.names() {
        match registry.apply(&name).await {
            Ok(_) => {}
            Err(e) if registry.sources().named_on_command_line(&name) => return Err(e.into()),
            Err(e) => {
                tracing::error!(plugin = %name, "rejected: {}; it is not served", Chain(&e));
                rejected.push(name);
            }
        }
    }
    if registry.services().is_empty() && registry.sources().dir.is_none() {
        return Err(StartError::NoPlugins);
    }
    // Every listener named at start (and the admin endpoint) holds its socket now.
    if let Some(user) = &user {
        user.switch()?;
    }
    started(&registry, &rejected, &config);
    let systemd = tokio::spawn(systemd::ready_when_served(registry.clone(), stop.clone()));

    // A signal, or `POST /api/drain`.
    let mut signals = signals;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = drain_requested.cancelled() => break,
            Some(signal) = signals.recv() => match signal {
                Signal::Reload => reload(&registry).await,
                Signal::Status => status(&registry, &shared),
            },
        }
    }
    systemd::notify(&[sd_notify::NotifyState::Stopping]);
    systemd.abort();
    tracing::info!(drain_timeout = ?config.drain_timeout, "shutting down: no new connections; draining");
    stop.cancel();
    drop(watching);
    drain(&shared, config.drain_timeout).await;
    for service in registry.services() {
        let s = service.counters.snapshot();
        tracing::info!(
            plugin = %service.name(), served = s.served, errors = s.errors, traps = s.traps,
            limit_hits = s.limit_hits, host_failures = s.host_failures, refused = s.refused, "stopped"
        );
    }
    if let Some(c) = shared.rt.hub().backplane_counts() {
        tracing::info!(
            sent = c.sent,
            received = c.received,
            dropped_full = c.dropped_full,
            dropped_disconnected = c.dropped_disconnected,
            lost = c.lost,
            connects = c.connects,
            disconnects = c.disconnects,
            "hub backplane stopped"
        );
    }
    Ok(())
}

/// Prints `line` on stdout at once (tests and scripts read these lines).
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Says at the start what is served and what was rejected.
fn started(registry: &Registry, rejected: &[String], config: &ServeConfig) {
    let served: Vec<String> = registry.services().iter().map(|s| s.name().to_string()).collect();
    let rejected_list = if rejected.is_empty() { String::new() } else { format!("; rejected: {}", rejected.join(", ")) };
    if served.is_empty() {
        let waiting = match &config.plugins_dir {
            Some(dir) => format!("; waiting for a *.wasm in {}", dir.display()),
            None => String::new(),
        };
        tracing::warn!(served = 0, rejected = rejected.len(), "serving no plugins{rejected_list}{waiting}");
    } else {
        tracing::info!(served = served.len(), rejected = rejected.len(), "serving {}{rejected_list}", served.join(", "));
    }
}

/// SIGHUP: re-reads everything and says what changed.
async fn reload(registry: &Arc<Registry>) {
    tracing::info!("reload requested (SIGHUP): re-reading the configuration and every plugin file");
    systemd::reloading();
    let done = watch::reload_all(registry).await;
    tracing::info!(changed = done.changed, rejected = done.rejected, "reload done");
    systemd::notify(&[sd_notify::NotifyState::Ready]);
}

/// SIGUSR1: one log line per plugin and one for the whole host.
fn status(registry: &Registry, shared: &Shared) {
    let services = registry.services();
    for service in &services {
        let plugin = service.current();
        let s = service.counters.snapshot();
        tracing::info!(
            plugin = %service.name(), version = %plugin.info.version, sha256 = &plugin.sha256[..12.min(plugin.sha256.len())],
            open = service.gate.open(), served = s.served, errors = s.errors, traps = s.traps, limit_hits = s.limit_hits,
            host_failures = s.host_failures, refused = s.refused, quarantined = service.quarantine.in_force(), "status"
        );
    }
    let not_served: Vec<String> = registry.names().into_iter().filter(|n| !registry.serves(n)).collect();
    tracing::info!(
        plugins = services.len(), open = shared.admission.open(), not_served = %not_served.join(","), "status: host"
    );
}

/// Lets open conversations go on for [`DRAIN_NOTICE`] (what is in flight finishes as
/// before), then tells every one the host is draining (a stream's input ends once nothing
/// more is in flight, its output stays open for a goodbye); at `timeout` after the start
/// (`None`: never) closes the rest and gives them [`CLOSE_GRACE`] to say goodbye. Ends
/// as soon as every conversation has.
async fn drain(shared: &Shared, timeout: Option<Duration>) {
    shared.tracker.close();
    let started = tokio::time::Instant::now();
    let notice = timeout.map_or(DRAIN_NOTICE, |t| t.min(DRAIN_NOTICE));
    if tokio::time::timeout(notice, shared.tracker.wait()).await.is_ok() {
        return;
    }
    shared.draining.cancel();
    let Some(timeout) = timeout else { return shared.tracker.wait().await };
    if tokio::time::timeout_at(started + timeout, shared.tracker.wait()).await.is_err() {
        tracing::info!(open = shared.tracker.len(), "drain timeout: closing the remaining connections");
        shared.close_all.cancel();
        let _ = tokio::time::timeout(CLOSE_GRACE + Duration::from_secs(1), shared.tracker.wait()).await;
    }
}

/// Checks the plugin sources and the per-plugin flags against each other.
fn sources(config: &ServeConfig) -> Result<Sources, StartError> {
    if config.plugins.is_empty() && config.plugins_dir.is_none() && config.config_file.is_none() {
        return Err(StartError::NoPlugins);
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for spec in &config.plugins {
        let name = name_of(&spec.path);
        if files.iter().any(|(n, _)| *n == name) {
            return Err(StartError::DuplicateName(name));
        }
        // Later a vanished file means "remove the plugin"; at the start it is an error.
        std::fs::File::open(&spec.path).map_err(|e| StartError::Load { path: spec.path.clone(), source: LoadError::Read(e) })?;
        files.push((name, spec.path.clone()));
    }
    if let Some(dir) = &config.plugins_dir
        && let Some(reason) = not_a_directory(dir)
    {
        return Err(StartError::PluginsDir { path: dir.clone(), reason });
    }
    // With a plugins folder or a config file, a flag may name a plugin that is not
    // there yet; otherwise it is a typo.
    if config.plugins_dir.is_none() && config.config_file.is_none() {
        let known = |k: &&String| files.iter().any(|(n, _)| n == *k);
        if let Some(unknown) = config.settings.keys().find(|k| !known(k)) {
            return Err(StartError::UnknownPlugin("--set", unknown.clone()));
        }
        if let Some(unknown) = config.dirs.keys().find(|k| !known(k)) {
            return Err(StartError::UnknownPlugin("--dir", unknown.clone()));
        }
        if let Some(unknown) = config.tls.keys().find(|k| !known(k)) {
            return Err(StartError::UnknownPlugin("--tls", unknown.clone()));
        }
        if let Some(unknown) = config.proxy_protocol.iter().find(|k| !known(k)) {
            return Err(StartError::UnknownPlugin("--proxy-protocol", unknown.clone()));
        }
    }
    for (plugin, path) in &config.dirs {
        if let Some(reason) = not_a_directory(path) {
            return Err(StartError::BadDir { plugin: plugin.clone(), path: path.clone(), reason });
        }
    }
    Ok(Sources { files, dir: config.plugins_dir.clone(), config_file: config.config_file.clone() })
}

/// The command line's per-plugin settings, grants and listeners, as overrides.
fn overrides(config: &ServeConfig) -> BTreeMap<String, PluginConfig> {
    let mut out: BTreeMap<String, PluginConfig> = BTreeMap::new();
    for (name, pairs) in &config.settings {
        out.entry(name.clone()).or_default().settings.extend(pairs.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for (name, dir) in &config.dirs {
        out.entry(name.clone()).or_default().dir = Some(dir.clone());
    }
    for name in &config.proxy_protocol {
        out.entry(name.clone()).or_default().proxy_protocol = Some(true);
    }
    for (name, (cert, key)) in &config.tls {
        out.entry(name.clone()).or_default().tls = Some(TlsConfig::cert_and_key(cert.clone(), key.clone()));
    }
    for spec in &config.plugins {
        if let Some(listen) = &spec.listen {
            out.entry(name_of(&spec.path)).or_default().listen = Some(listen.iter().map(ToString::to_string).collect());
        }
    }
    out
}
