//! Following the plugin files: notify's full debouncer on the folders involved, each
//! change then applied through the [`Registry`] once the file is stable, every plugin in
//! its own task (one plugin's slow compile holds up no other's change). A plugin's TLS
//! files (certificate, key, client CA) are its files too: their folders are watched as
//! soon as a configuration names them, and a change to one rotates the certificate.
//!
//! Writers are not polite: editors write in place, `cp` truncates then writes, tools
//! rename a temporary file over the target, and one save is several events. So a path's
//! events are delivered only after [`QUIET`] without new ones (the debouncer's job, which
//! also pairs renames), and a file is read only once its size and modification time held
//! still for [`STABLE`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::registry::{Change, Registry, ReloadError, TlsFiles};
use crate::config::name_of;
use crate::util::error::Chain;

/// Time without events on a path before its change is looked at.
pub const QUIET: Duration = Duration::from_millis(40);
/// Time the file must hold still before it is read.
pub const STABLE: Duration = Duration::from_millis(25);

/// What a changed path means.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A plugin's component or sidecar.
    Plugin(String),
    /// The `--config` file.
    Config,
}

/// Whether an event can mean new contents. Opening and reading a file are events too —
/// our own reads among them — and must not trigger a reload.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// notify's debouncer, shared with the task that adds the TLS files' folders.
type Shared = Arc<Mutex<Debouncer<notify::RecommendedWatcher, RecommendedCache>>>;

/// The running watcher; it watches until it is dropped and the stop token is cancelled.
pub(crate) struct Watching {
    _debouncer: Shared,
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Which plugin (or the config file) a path belongs to.
struct Classifier {
    dir: Option<PathBuf>,
    files: BTreeMap<PathBuf, String>,
    config: Option<PathBuf>,
    /// The plugins naming each TLS file.
    tls: BTreeMap<PathBuf, BTreeSet<String>>,
}

impl Classifier {
    fn new(registry: &Registry) -> Classifier {
        let sources = registry.sources();
        Classifier {
            dir: sources.dir.as_deref().map(absolute),
            files: sources.files.iter().map(|(name, path)| (absolute(path), name.clone())).collect(),
            config: sources.config_file.as_deref().map(absolute),
            tls: BTreeMap::new(),
        }
    }

    /// Takes the TLS files the plugins name now.
    fn set_tls(&mut self, files: &TlsFiles) {
        self.tls.clear();
        for (name, paths) in files {
            for path in paths {
                self.tls.entry(absolute(path)).or_default().insert(name.clone());
            }
        }
    }

    /// The folders to watch.
    fn folders(&self) -> BTreeSet<PathBuf> {
        let files = self.files.keys().chain(self.config.iter()).chain(self.tls.keys());
        let mut folders: BTreeSet<PathBuf> = files.filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
        folders.extend(self.dir.clone());
        folders
    }

    /// What a changed path means: the plugins naming it as a TLS file, and the plugin
    /// (or the config file) it is the component or sidecar of.
    fn classify(&self, path: &Path) -> Vec<Target> {
        let tls = self.tls.get(path).into_iter().flatten().map(|name| Target::Plugin(name.clone()));
        tls.chain(self.classify_file(path)).collect()
    }

    fn classify_file(&self, path: &Path) -> Option<Target> {
        if self.config.as_deref() == Some(path) {
            return Some(Target::Config);
        }
        let ext = path.extension()?.to_str()?;
        if ext != "wasm" && ext != "toml" {
            return None;
        }
        if let Some(name) = self.files.get(&path.with_extension("wasm")) {
            return Some(Target::Plugin(name.clone()));
        }
        (self.dir.as_deref() == path.parent()).then(|| Target::Plugin(name_of(path)))
    }
}

/// Starts following every folder the registry's plugins come from.
pub(crate) fn spawn(registry: Arc<Registry>, stop: CancellationToken) -> notify::Result<Watching> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer = new_debouncer(QUIET, None, move |result: DebounceEventResult| match result {
        Ok(events) => {
            let paths: Vec<PathBuf> = events.into_iter().filter(|e| is_change(&e.event.kind)).flat_map(|e| e.event.paths.clone()).collect();
            if !paths.is_empty() {
                let _ = tx.send(paths);
            }
        }
        Err(errors) => errors.iter().for_each(|e| tracing::warn!("file watcher: {}", Chain(e))),
    })?;
    let classifier = Classifier::new(&registry);
    let watched = classifier.folders();
    for folder in &watched {
        debouncer.watch(folder, RecursiveMode::NonRecursive)?;
    }
    let debouncer = Arc::new(Mutex::new(debouncer));
    let folders = Folders { debouncer: debouncer.clone(), watched };
    // Subscribed here, before the first load names any TLS file, so none is missed.
    let tls_files = registry.tls_files();
    tokio::spawn(follow(registry, rx, classifier, folders, tls_files, stop));
    Ok(Watching { _debouncer: debouncer })
}

/// The folders being watched, and the debouncer to watch more with.
struct Folders {
    debouncer: Shared,
    watched: BTreeSet<PathBuf>,
}

impl Folders {
    /// Starts watching the classifier's folders not watched yet (a TLS file's folder
    /// that is missing is logged; the plugin's load says what is wrong with the file).
    fn add(&mut self, classifier: &Classifier) {
        for folder in classifier.folders() {
            if self.watched.contains(&folder) {
                continue;
            }
            match self.debouncer.lock().watch(&folder, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(folder = %folder.display(), "watching for tls files");
                    self.watched.insert(folder);
                }
                Err(e) => tracing::warn!(folder = %folder.display(), "cannot follow tls files here: {}", Chain(&e)),
            }
        }
    }
}

/// Applies each batch of changes: every plugin it touches in a task of its own. Follows
/// the TLS files the plugins name as their configurations change.
async fn follow(
    registry: Arc<Registry>,
    mut batches: UnboundedReceiver<Vec<PathBuf>>,
    mut classifier: Classifier,
    mut folders: Folders,
    mut tls_files: tokio::sync::watch::Receiver<TlsFiles>,
    stop: CancellationToken,
) {
    classifier.set_tls(&tls_files.borrow_and_update());
    folders.add(&classifier);
    let mut tls_open = true;
    loop {
        let batch = tokio::select! {
            () = stop.cancelled() => return,
            changed = tls_files.changed(), if tls_open => {
                tls_open = changed.is_ok();
                classifier.set_tls(&tls_files.borrow_and_update());
                folders.add(&classifier);
                continue;
            }
            batch = batches.recv() => match batch {
                Some(batch) => batch,
                None => return,
            },
        };
        let targets: BTreeSet<Target> = batch.iter().flat_map(|p| classifier.classify(p)).collect();
        for target in targets {
            let registry = registry.clone();
            tokio::spawn(async move {
                match target {
                    Target::Plugin(name) => apply_plugin(&registry, name).await,
                    Target::Config => apply_config(&registry).await,
                }
            });
        }
    }
}

/// Size and modification time, or None if the file is gone.
fn fingerprint(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Waits until `path` holds still for [`STABLE`] (bounded: a file rewritten forever is
/// read after a few rounds anyway; a bad read is rejected like any bad file).
async fn settle(path: &Path) {
    let mut before = fingerprint(path);
    for _ in 0..40 {
        tokio::time::sleep(STABLE).await;
        let after = fingerprint(path);
        if after == before {
            return;
        }
        before = after;
    }
}

/// Applies a change to one plugin's files, logging a rejection.
async fn apply_plugin(registry: &Registry, name: String) {
    for path in registry.paths_of(&name) {
        settle(&path).await;
    }
    if let Err(e) = registry.apply(&name).await {
        tracing::error!(plugin = %name, "rejected: {}; {}", Chain(&e), then(registry, &name, &e));
    }
}

/// What serves after a rejected change to plugin `name`.
fn then(registry: &Registry, name: &str, e: &ReloadError) -> &'static str {
    match (registry.serves(name), e) {
        (true, ReloadError::Tls { .. }) => "the certificate in use keeps serving",
        (true, _) => "the last good version keeps serving",
        (false, _) => "it is not served",
    }
}

/// Re-reads the `--config` file and applies it to every plugin it names (or named).
async fn apply_config(registry: &Arc<Registry>) {
    if let Some(path) = &registry.sources().config_file {
        settle(path).await;
    }
    let before = registry.names();
    if let Err(e) = registry.reload_config_file() {
        tracing::error!("rejected: {}; the previous configuration stays in force", Chain(&e));
        return;
    }
    let mut names = registry.names();
    names.extend(before);
    names.sort();
    names.dedup();
    for name in names {
        tokio::spawn({
            let registry = registry.clone();
            async move { apply_plugin(&registry, name).await }
        });
    }
}

/// What a [`reload_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reloaded {
    /// Plugins loaded, swapped or removed.
    pub(crate) changed: usize,
    /// Plugins whose change was rejected (the last good version keeps serving).
    pub(crate) rejected: usize,
}

/// Re-reads everything now, as `systemctl reload` (SIGHUP) asks: the `--config` file,
/// then every plugin's component and sidecar, each change applied like one the watcher
/// saw. Returns when every plugin has been looked at.
pub(crate) async fn reload_all(registry: &Arc<Registry>) -> Reloaded {
    let mut reloaded = Reloaded::default();
    if let Err(e) = registry.reload_config_file() {
        tracing::error!("rejected: {}; the previous configuration stays in force", Chain(&e));
        reloaded.rejected += 1;
    }
    let mut names = registry.names();
    names.extend(registry.services().iter().map(|s| s.name().to_string()));
    names.sort();
    names.dedup();
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let registry = registry.clone();
        tasks.spawn(async move {
            let result = registry.apply(&name).await;
            if let Err(e) = &result {
                tracing::error!(plugin = %name, "rejected: {}; {}", Chain(e), then(&registry, &name, e));
            }
            result
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(Change::Unchanged | Change::Absent)) => {}
            Ok(Ok(_)) => reloaded.changed += 1,
            Ok(Err(_)) => reloaded.rejected += 1,
            Err(e) => {
                tracing::error!("reload task failed: {e}");
                reloaded.rejected += 1;
            }
        }
    }
    reloaded
}
