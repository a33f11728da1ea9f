//! The registry: every served plugin by name, kept in step with the files on disk.
//!
//! [`Registry::apply`] brings one plugin in line with its files: loads a new or changed
//! component (compiled off the async threads, or taken from the cache), binds listeners
//! it did not have, swaps the new version in atomically, stops listeners it no longer
//! has, and removes the plugin when its file is gone. A file that does not load, or a
//! configuration that does not parse, is rejected: logged with the file and the reason,
//! while the last good version keeps serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cache::Origin;
use crate::config::{PluginConfig, read_config_file};
use crate::grants::{DirGrant, Grants, Stdio};
use crate::limits::Limits;
use crate::listen::Listen;
use crate::plugin::{Plugin, name_of};
use crate::serve::{Bound, ServeError, bind};
use crate::service::{Ctx, Service};
use crate::udp::UdpOptions;

/// Where plugins come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--plugin PATH` files with their names, in command-line order.
    pub files: Vec<(String, PathBuf)>,
    /// `--plugins DIR`: every `*.wasm` in it.
    pub dir: Option<PathBuf>,
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
}

impl Sources {
    /// The component file for `name`, if any source names one (command line first, then
    /// the config file, then the plugins folder).
    fn locate(&self, name: &str, config: &BTreeMap<String, PluginConfig>) -> Option<PathBuf> {
        if let Some((_, path)) = self.files.iter().find(|(n, _)| n == name) {
            return Some(path.clone());
        }
        if let Some(path) = config.get(name).and_then(|c| c.path.clone()) {
            return Some(path);
        }
        let path = self.dir.as_ref()?.join(format!("{name}.wasm"));
        path.is_file().then_some(path)
    }

    /// Whether `name` was given with `--plugin`.
    pub fn is_file(&self, name: &str) -> bool {
        self.files.iter().any(|(n, _)| n == name)
    }

    /// Every plugin name the sources mention now: `--plugin` files in command-line order,
    /// then the config file's and the folder's, sorted.
    pub fn names(&self, config: &BTreeMap<String, PluginConfig>) -> Vec<String> {
        let mut others: Vec<String> = config.keys().cloned().collect();
        if let Some(dir) = &self.dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
                    others.push(name_of(&path));
                }
            }
        }
        others.sort();
        let mut names: Vec<String> = self.files.iter().map(|(n, _)| n.clone()).collect();
        for name in others {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

/// The sidecar of a component: `NAME.toml` beside `NAME.wasm` (other files have none).
pub fn sidecar_of(wasm: &Path) -> Option<PathBuf> {
    wasm.extension().is_some_and(|e| e == "wasm").then(|| wasm.with_extension("toml"))
}

struct Entry {
    service: Arc<Service>,
    listeners: Vec<(Listen, CancellationToken)>,
    sha256: String,
    config: PluginConfig,
}

/// All served plugins.
pub struct Registry {
    ctx: Ctx,
    stop: CancellationToken,
    sources: Sources,
    /// Defaults from the command line: global limits, UDP options.
    limits: Limits,
    udp: UdpOptions,
    /// Command-line overrides per plugin (`--set`, `--dir`, `@LISTEN`).
    cli: BTreeMap<String, PluginConfig>,
    /// The `--config` file's tables, as last read successfully.
    config: std::sync::Mutex<BTreeMap<String, PluginConfig>>,
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Registry {
    /// An empty registry; `stop` ends every listener.
    pub fn new(
        ctx: Ctx,
        stop: CancellationToken,
        sources: Sources,
        limits: Limits,
        udp: UdpOptions,
        cli: BTreeMap<String, PluginConfig>,
    ) -> Result<Arc<Registry>, ServeError> {
        let config = match &sources.config_file {
            Some(path) => read_config_file(path).map_err(ServeError::Config)?,
            None => BTreeMap::new(),
        };
        Ok(Arc::new(Registry {
            ctx,
            stop,
            sources,
            limits,
            udp,
            cli,
            config: std::sync::Mutex::new(config),
            entries: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Where plugins come from.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Every plugin name the sources mention now.
    pub fn names(&self) -> Vec<String> {
        self.sources.names(&self.config.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The files behind `name` (component and sidecar) that exist now.
    pub fn paths_of(&self, name: &str) -> Vec<PathBuf> {
        let located = self.sources.locate(name, &self.config.lock().unwrap_or_else(|e| e.into_inner()));
        located.into_iter().flat_map(|wasm| [sidecar_of(&wasm), Some(wasm)]).flatten().filter(|p| p.exists()).collect()
    }

    /// Every served plugin's service.
    pub async fn services(&self) -> Vec<Arc<Service>> {
        self.entries.lock().await.values().map(|e| e.service.clone()).collect()
    }

    /// Re-reads the `--config` file; on an error the previous contents stay in force.
    pub fn reload_config_file(&self) -> Result<(), ServeError> {
        let Some(path) = &self.sources.config_file else { return Ok(()) };
        let fresh = read_config_file(path).map_err(ServeError::Config)?;
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The configuration of `name` whose component is `wasm`: `--config`, then the
    /// sidecar, then the command line.
    fn effective_config(&self, name: &str, wasm: &Path) -> Result<PluginConfig, ServeError> {
        let base = self.config.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned().unwrap_or_default();
        let sidecar_path = sidecar_of(wasm);
        let sidecar = if let Some(sidecar_path) = sidecar_path.filter(|p| p.is_file()) {
            PluginConfig::read_sidecar(&sidecar_path).map_err(ServeError::Config)?
        } else {
            PluginConfig::default()
        };
        let cli = self.cli.get(name).cloned().unwrap_or_default();
        Ok(base.overridden_by(&sidecar).overridden_by(&cli))
    }

    /// Brings plugin `name` in line with its files. Errors mean the change was rejected
    /// (the previous version, if any, keeps serving).
    pub async fn apply(&self, name: &str) -> Result<(), ServeError> {
        let mut entries = self.entries.lock().await;
        let located = self.sources.locate(name, &self.config.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(path) = located.filter(|p| p.is_file()) else {
            if let Some(entry) = entries.remove(name) {
                entry.service.stop();
                tracing::info!(plugin = %name, version = %entry.service.current().info.version, hash = &entry.sha256[..12], "removed: no longer accepting; open connections finish");
            }
            return Ok(());
        };
        let config = self.effective_config(name, &path)?;
        let limits = config.limits.apply(self.limits).map_err(|reason| {
            ServeError::Config(crate::config::ConfigError { path: sidecar_of(&path).unwrap_or_else(|| path.clone()), reason })
        })?;
        if let Some(dir) = &config.dir
            && !dir.is_dir()
        {
            return Err(ServeError::BadDir { plugin: name.to_string(), path: dir.clone(), reason: "no such directory".into() });
        }
        let grants = Grants {
            env: config.settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            dir: config.dir.clone().map(|host| DirGrant { host, writable: false }),
            stdio: Stdio::Log,
        };
        let plugin =
            Plugin::load(&self.ctx.rt, &path, grants, limits).await.map_err(|source| ServeError::Load { path: path.clone(), source })?;
        if let Some(entry) = entries.get(name)
            && entry.sha256 == plugin.sha256
            && entry.config == config
        {
            return Ok(()); // nothing changed (several events for one write)
        }
        let listens = match config.listens() {
            Ok(Some(listens)) => listens,
            Ok(None) => plugin
                .info
                .listen
                .iter()
                .map(|l| l.parse())
                .collect::<Result<Vec<Listen>, _>>()
                .map_err(|source| ServeError::DefaultListen { plugin: name.to_string(), source })?,
            Err(e) => {
                return Err(ServeError::Config(crate::config::ConfigError {
                    path: sidecar_of(&path).unwrap_or_else(|| path.clone()),
                    reason: e.to_string(),
                }));
            }
        };
        if listens.is_empty() {
            return Err(ServeError::NoListeners(name.to_string()));
        }
        let plugin = Arc::new(plugin);
        let max_connections = config.limits.max_connections.unwrap_or(0);

        // Bind what is new before touching what runs: a busy port rejects the change.
        let current: Vec<Listen> = entries.get(name).map(|e| e.listeners.iter().map(|(l, _)| l.clone()).collect()).unwrap_or_default();
        let mut fresh: Vec<(Listen, Bound)> = Vec::new();
        for listen in listens.iter().filter(|l| !current.contains(l)) {
            fresh.push((listen.clone(), bind(&plugin, listen.clone(), self.udp).await?));
        }
        // Listeners that stay must suit the new version too (e.g. a udp listener needs a
        // datagram handler).
        for listen in listens.iter().filter(|l| current.contains(l)) {
            crate::serve::check_world(&plugin, listen)?;
        }
        let (summary, version, hash) = (plugin.world.name(), plugin.info.version.clone(), plugin.sha256.clone());
        let cached = plugin.origin == Origin::Cached;
        match entries.get_mut(name) {
            Some(entry) => {
                let old = entry.service.swap(plugin);
                entry.service.gate.set_max(max_connections);
                entry.listeners.retain(|(listen, token)| {
                    let keep = listens.contains(listen);
                    if !keep {
                        token.cancel();
                        tracing::info!(plugin = %name, %listen, "listener stopped");
                    }
                    keep
                });
                for (listen, bound) in fresh {
                    let token = entry.service.listener_token();
                    bound.start(&entry.service, &self.ctx, token.clone());
                    entry.listeners.push((listen, token));
                }
                tracing::info!(
                    plugin = %name, version = %version, hash = &hash[..12], world = summary, cached,
                    previous_version = %old.info.version, previous_hash = &old.sha256[..12], "swapped: new connections get the new version"
                );
                entry.sha256 = hash;
                entry.config = config;
            }
            None => {
                let service = Service::new(plugin, max_connections, &self.stop);
                let mut listeners = Vec::new();
                for (listen, bound) in fresh {
                    let token = service.listener_token();
                    bound.start(&service, &self.ctx, token.clone());
                    listeners.push((listen, token));
                }
                tracing::info!(plugin = %name, version = %version, hash = &hash[..12], world = summary, cached, "loaded");
                entries.insert(name.to_string(), Entry { service, listeners, sha256: hash, config });
            }
        }
        Ok(())
    }
}
