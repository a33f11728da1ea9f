//! The registry: every served plugin by name, kept in step with the files on disk.
//!
//! [`Registry::apply`] brings one plugin in line with its files: loads a new or changed
//! component (compiled off the async threads, or taken from the cache), binds listeners
//! it did not have, swaps the new version in atomically, stops listeners it no longer
//! has, and removes the plugin when its file is gone. A file that does not load, or a
//! configuration that does not parse, is rejected: the error names the file and the
//! reason, while the last good version (if any) keeps serving. The PEM files of its
//! `tls:` listeners are part of its files: a change to them alone rotates the
//! certificate new handshakes get ([`tls`]), by the same rules.
//!
//! Locking: changes to one plugin are applied one at a time (a per-plugin turn), and
//! the table of served plugins is locked only to read it or to swap an entry — never
//! across a compile or a bind, so a slow load (a Python component compiles for ~12 s)
//! holds up no other plugin's change and no reader of the table.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::sources::Sources;

mod change;
mod error;
mod operator;
mod tls;
use crate::config::file::{read_config_file, read_serve_table, sidecar_of};
use crate::config::{ConfigError, ConfigProblem, Limits, Listen, PluginConfig, ServeTable, not_a_directory};
use crate::instance::cache::Origin;
use crate::instance::grants::{DirGrant, Grants, Stdio};
use crate::instance::plugin::{Plugin, PluginFile};
use crate::listener::tls::{TlsSetup, TlsSlot};
use crate::listener::{BindOptions, BoundListener, Paused, Shared, bind, check_world};
use crate::service::Service;
use crate::session::record::RecordDir;
use change::Step;
pub(crate) use change::{Change, Reloads};
pub use error::ReloadError;
pub(crate) use operator::OperatorError;
pub(crate) use tls::TlsFiles;

struct Entry {
    service: Arc<Service>,
    listeners: Vec<ServedListener>,
    /// The hash of the version serving now.
    sha256: String,
    config: PluginConfig,
    /// The version before, kept for a rollback.
    previous: Option<Arc<Plugin>>,
    /// When the version serving now was put in.
    since: SystemTime,
    /// The TLS setup its `tls:` listeners hand new handshakes.
    tls: TlsSlot,
}

/// One of a plugin's listeners.
struct ServedListener {
    listen: Listen,
    /// As its `listening` line shows it (`tcp://127.0.0.1:50007`).
    url: String,
    token: CancellationToken,
    paused: Paused,
}

/// All served plugins.
pub(crate) struct Registry {
    shared: Shared,
    stop: CancellationToken,
    sources: Sources,
    /// Limits from the command line, before per-plugin overrides.
    limits: Limits,
    /// How listeners are bound (UDP settings, `--reuse-port`).
    bind_options: BindOptions,
    /// The command line's per-plugin settings, grants and listeners (`--set`, `--dir`,
    /// `@LISTEN`), which override the files.
    overrides: BTreeMap<String, PluginConfig>,
    /// The `--config` file's tables, as last read successfully.
    config: Mutex<BTreeMap<String, PluginConfig>>,
    /// Its `[serve]` table as read at start (a change needs a restart).
    serve_table: ServeTable,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// One change at a time per plugin.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Versions loaded (or swapped in) and changes rejected, per plugin name.
    reloads: Mutex<BTreeMap<String, Reloads>>,
    /// The TLS files each plugin's configuration names (the watcher follows them).
    tls_files: tokio::sync::watch::Sender<tls::TlsFiles>,
}

/// How a plugin will be served once its new version is swapped in.
struct Prepared {
    plugin: Arc<Plugin>,
    record: Option<RecordDir>,
    config: PluginConfig,
    listens: Vec<Listen>,
    fresh: Vec<(Listen, BoundListener)>,
    /// The plugin's TLS slot (its entry's, or a new one) and what to put in it.
    tls: (TlsSlot, Option<Arc<TlsSetup>>),
}

impl Registry {
    /// An empty registry; `stop` ends every listener.
    pub(crate) fn new(
        shared: Shared,
        stop: CancellationToken,
        sources: Sources,
        limits: Limits,
        bind_options: BindOptions,
        overrides: BTreeMap<String, PluginConfig>,
    ) -> Result<Arc<Registry>, ConfigError> {
        let (config, serve_table) = match &sources.config_file {
            Some(path) => (read_config_file(path)?, read_serve_table(path)?),
            None => (BTreeMap::new(), ServeTable::default()),
        };
        Ok(Arc::new(Registry {
            shared,
            stop,
            sources,
            limits,
            bind_options,
            overrides,
            config: Mutex::new(config),
            serve_table,
            entries: Mutex::new(BTreeMap::new()),
            turns: Mutex::new(HashMap::new()),
            reloads: Mutex::new(BTreeMap::new()),
            tls_files: tokio::sync::watch::Sender::new(tls::TlsFiles::new()),
        }))
    }

    /// Where plugins come from.
    pub(crate) fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Every plugin name the sources mention now.
    pub(crate) fn names(&self) -> Vec<String> {
        self.sources.names(&self.config.lock())
    }

    /// The files behind `name` (component and sidecar) that exist now.
    pub(crate) fn paths_of(&self, name: &str) -> Vec<PathBuf> {
        let located = self.sources.locate(name, &self.config.lock());
        let tls = self.tls_files.borrow().get(name).cloned().unwrap_or_default();
        let files = located.into_iter().flat_map(|wasm| [sidecar_of(&wasm), Some(wasm)]).flatten();
        files.chain(tls).filter(|p| p.exists()).collect()
    }

    /// The runtime plugins run on.
    pub(crate) fn runtime(&self) -> &Arc<crate::instance::runtime::Runtime> {
        &self.shared.rt
    }

    /// How often each plugin's changes were applied or rejected, by name.
    pub(crate) fn reloads(&self) -> BTreeMap<String, Reloads> {
        self.reloads.lock().clone()
    }

    /// Every served plugin's service.
    pub(crate) fn services(&self) -> Vec<Arc<Service>> {
        self.entries.lock().values().map(|e| e.service.clone()).collect()
    }

    /// Whether a version of `name` is being served.
    pub(crate) fn serves(&self, name: &str) -> bool {
        self.entries.lock().contains_key(name)
    }

    /// Why the host is not ready (`/readyz`, systemd's READY): it is configured to serve
    /// nothing, or a configured plugin is not served (a plugin is served once all its
    /// listeners are bound). `None` when ready.
    pub(crate) fn not_ready(&self) -> Option<String> {
        let names = self.names();
        if names.is_empty() {
            return Some("no plugins are configured".into());
        }
        let missing: Vec<String> = names.into_iter().filter(|n| !self.serves(n)).collect();
        (!missing.is_empty()).then(|| format!("not served: {}", missing.join(", ")))
    }

    /// Re-reads the `--config` file; on an error the previous contents stay in force.
    pub(crate) fn reload_config_file(&self) -> Result<(), ConfigError> {
        let Some(path) = &self.sources.config_file else { return Ok(()) };
        let fresh = read_config_file(path)?;
        if read_serve_table(path)? != self.serve_table {
            tracing::warn!("{}: the [serve] table changed; it takes effect at the next start", path.display());
        }
        *self.config.lock() = fresh;
        Ok(())
    }

    /// Brings plugin `name` in line with its files. An error means the change was
    /// rejected (the previous version, if any, keeps serving).
    pub(crate) async fn apply(&self, name: &str) -> Result<Change, ReloadError> {
        let turn = self.turns.lock().entry(name.to_string()).or_default().clone();
        let _turn = turn.lock().await;
        let located = self.sources.locate(name, &self.config.lock());
        let Some(path) = located.filter(|p| p.is_file()) else { return Ok(self.remove(name)) };
        let change = self.prepare(name, &path).await.map(|step| match step {
            Step::Unchanged => Change::Unchanged,
            Step::Rotate(setup) => self.rotate(name, setup),
            Step::Load(prepared) => self.commit(name, *prepared),
        });
        let mut reloads = self.reloads.lock();
        let counts = reloads.entry(name.to_string()).or_default();
        match &change {
            Ok(Change::Loaded | Change::Swapped) => counts.ok += 1,
            Ok(Change::Rotated) => counts.tls_rotated += 1,
            Err(e) => {
                counts.rejected += 1;
                counts.tls_rejected += u64::from(matches!(e, ReloadError::Tls { .. }));
            }
            Ok(_) => {}
        }
        change
    }

    /// Loads the plugin at `path` (and its TLS files) and binds its new listeners,
    /// touching nothing that serves.
    async fn prepare(&self, name: &str, path: &Path) -> Result<Step, ReloadError> {
        let config = self.effective_config(name, path)?;
        self.follow_tls_files(name, &config);
        let tls = self.load_tls(name, &config)?;
        let config_error = |problem| ConfigError { path: sidecar_of(path).unwrap_or_else(|| path.to_path_buf()), problem };
        let limits = config.limits.apply(self.limits).map_err(config_error)?;
        if let Some(dir) = &config.dir
            && let Some(reason) = not_a_directory(dir)
        {
            return Err(ReloadError::BadDir { plugin: name.to_string(), path: dir.clone(), reason });
        }
        if config.proxy_protocol == Some(true) && self.shared.proxy_from.is_empty() {
            return Err(ReloadError::ProxyWithoutSources(name.to_string()));
        }
        let record = match &config.record {
            Some(dir) => Some(self.shared.recorders.get(dir).map_err(|source| ReloadError::Record {
                plugin: name.to_string(),
                path: dir.clone(),
                source,
            })?),
            None => None,
        };
        let load_error = |source| ReloadError::Load { path: path.to_path_buf(), source };
        let file = PluginFile::read(path).await.map_err(load_error)?;
        let (current, slot): (Option<Vec<Listen>>, TlsSlot) = {
            let entries = self.entries.lock();
            match entries.get(name) {
                Some(entry) if entry.sha256 == file.sha256 && entry.config == config => return Ok(tls::step(&entry.tls, tls)),
                Some(entry) => (Some(entry.listeners.iter().map(|l| l.listen.clone()).collect()), entry.tls.clone()),
                None => (None, TlsSlot::default()),
            }
        };
        let grants = Grants {
            env: config.settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            dir: config.dir.clone().map(|host| DirGrant { host, writable: false }),
            stdio: Stdio::Log,
        };
        let plugin = Arc::new(Plugin::load(&self.shared.rt, file, grants, limits).await.map_err(load_error)?);
        let listens = match config.listens().map_err(|e| config_error(ConfigProblem::Listen(e)))? {
            Some(listens) => listens,
            None => plugin
                .info
                .listen
                .iter()
                .map(|l| l.parse())
                .collect::<Result<Vec<Listen>, _>>()
                .map_err(|source| ReloadError::DefaultListen { plugin: name.to_string(), source })?,
        };
        if listens.is_empty() {
            return Err(ReloadError::NoListeners(name.to_string()));
        }
        tls::needs_certificate(name, &listens, tls.as_ref())?;
        // Bind what is new before touching what runs: a busy port rejects the change.
        // Listeners that stay must suit the new version too (e.g. a udp listener needs a
        // datagram handler).
        let current = current.unwrap_or_default();
        let mut fresh = Vec::new();
        for listen in &listens {
            if current.contains(listen) {
                check_world(&plugin, listen)?;
            } else {
                fresh.push((listen.clone(), bind(&plugin, listen.clone(), self.bind_options, &slot).await?));
            }
        }
        Ok(Step::Load(Box::new(Prepared { plugin, record, config, listens, fresh, tls: (slot, tls) })))
    }

    /// Swaps a prepared version in (or serves a new plugin) and starts its new listeners.
    fn commit(&self, name: &str, prepared: Prepared) -> Change {
        let Prepared { plugin, record, config, listens, fresh, tls: (slot, tls) } = prepared;
        tls::put_in(name, &slot, tls);
        let max_connections = config.limits.max_connections.unwrap_or(0);
        let proxy_protocol = config.proxy_protocol == Some(true);
        let busy = config.busy.clone();
        let (world, version, hash, cached) =
            (plugin.world.name(), plugin.info.version.clone(), plugin.sha256.clone(), plugin.origin == Origin::Cached);
        let mut entries = self.entries.lock();
        let (service, change) = match entries.get_mut(name) {
            Some(entry) => {
                let old = entry.service.swap(plugin);
                entry.service.gate.set_max(max_connections);
                entry.listeners.retain(|served| {
                    let keep = listens.contains(&served.listen);
                    if !keep {
                        served.token.cancel();
                        tracing::info!(plugin = %name, listen = %served.listen, "listener stopped");
                    }
                    keep
                });
                tracing::info!(
                    plugin = %name, version = %version, hash = &hash[..12], world, cached,
                    previous_version = %old.info.version, previous_hash = &old.sha256[..12], "swapped: new connections get the new version"
                );
                entry.sha256 = hash;
                entry.config = config;
                entry.previous = Some(old);
                entry.since = SystemTime::now();
                (entry.service.clone(), Change::Swapped)
            }
            None => {
                let service = Service::new(plugin, max_connections, &self.stop);
                tracing::info!(plugin = %name, version = %version, hash = &hash[..12], world, cached, "loaded");
                let entry = Entry {
                    service: service.clone(),
                    listeners: Vec::new(),
                    sha256: hash,
                    config,
                    previous: None,
                    since: SystemTime::now(),
                    tls: slot,
                };
                entries.insert(name.to_string(), entry);
                (service, Change::Loaded)
            }
        };
        service.set_record(record);
        service.set_proxy_protocol(proxy_protocol);
        service.set_busy(busy.as_deref());
        let entry = entries.get_mut(name).expect("inserted or found above");
        for (listen, bound) in fresh {
            let (token, paused, url) = (service.listener_token(), Paused::default(), bound.url());
            bound.start(&service, &self.shared, token.clone(), paused.clone());
            entry.listeners.push(ServedListener { listen, url, token, paused });
        }
        change
    }

    /// The runtime plugins run on.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The command line's limits (before per-plugin overrides).
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Stops serving `name` (its files are gone); open connections finish.
    fn remove(&self, name: &str) -> Change {
        self.tls_files.send_if_modified(|files| files.remove(name).is_some());
        let Some(entry) = self.entries.lock().remove(name) else { return Change::Absent };
        entry.service.stop();
        let version = entry.service.current().info.version.clone();
        tracing::info!(plugin = %name, version = %version, hash = &entry.sha256[..12], "removed: no longer accepting; open connections finish");
        Change::Removed
    }

    /// The configuration of `name` whose component is `wasm`: `--config`, then the
    /// sidecar, then the command line.
    fn effective_config(&self, name: &str, wasm: &Path) -> Result<PluginConfig, ConfigError> {
        let base = self.config.lock().get(name).cloned().unwrap_or_default();
        let sidecar = match sidecar_of(wasm).filter(|p| p.is_file()) {
            Some(path) => PluginConfig::read_sidecar(&path)?,
            None => PluginConfig::default(),
        };
        let overrides = self.overrides.get(name).cloned().unwrap_or_default();
        Ok(base.overridden_by(&sidecar).overridden_by(&overrides))
    }
}
