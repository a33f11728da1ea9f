//! Following the plugin files: a `notify` watcher on the folders involved, debounced per
//! plugin, applying each change through the [`Registry`] once the file is stable.
//!
//! Writers are not polite: editors write in place, `cp` truncates then writes, tools
//! rename a temporary file over the target, and one save is several events. So a change
//! is applied only after [`QUIET`] without events for that plugin *and* once the file's
//! size and modification time held still for [`STABLE`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::plugin::name_of;
use crate::registry::Registry;

/// Time without events before a change is looked at.
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

/// The running watcher; dropping it stops watching.
pub struct Watching {
    _watcher: RecommendedWatcher,
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Starts following every folder the registry's plugins come from.
pub fn spawn(registry: Arc<Registry>, stop: CancellationToken) -> notify::Result<Watching> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if is_change(&event.kind) => event.paths.into_iter().for_each(|p| drop(tx.send(p))),
        Ok(_) => {}
        Err(e) => tracing::warn!("file watcher: {e}"),
    })?;
    let sources = registry.sources();
    let dir = sources.dir.as_deref().map(absolute);
    let files: BTreeMap<PathBuf, String> = sources.files.iter().map(|(name, path)| (absolute(path), name.clone())).collect();
    let config = sources.config_file.as_deref().map(absolute);
    let mut folders: BTreeSet<PathBuf> = files.keys().chain(config.iter()).filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
    folders.extend(dir.clone());
    for folder in &folders {
        watcher.watch(folder, RecursiveMode::NonRecursive)?;
    }
    let classify = move |path: &Path| -> Option<Target> {
        if config.as_deref() == Some(path) {
            return Some(Target::Config);
        }
        let ext = path.extension()?.to_str()?;
        if ext != "wasm" && ext != "toml" {
            return None;
        }
        let wasm = path.with_extension("wasm");
        if let Some(name) = files.get(&wasm) {
            return Some(Target::Plugin(name.clone()));
        }
        (dir.as_deref() == path.parent()).then(|| Target::Plugin(name_of(path)))
    };
    tokio::spawn(debounce(registry, rx, classify, stop));
    Ok(Watching { _watcher: watcher })
}

async fn debounce(
    registry: Arc<Registry>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
    classify: impl Fn(&Path) -> Option<Target>,
    stop: CancellationToken,
) {
    let mut due: BTreeMap<Target, Instant> = BTreeMap::new();
    loop {
        let next = due.values().min().copied();
        tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => match event {
                Some(path) => {
                    if let Some(target) = classify(&path) {
                        due.insert(target, Instant::now() + QUIET);
                    }
                }
                None => return,
            },
            () = sleep_until(next) => {
                let now = Instant::now();
                let ready: Vec<Target> = due.iter().filter(|(_, at)| **at <= now).map(|(t, _)| t.clone()).collect();
                for target in ready {
                    due.remove(&target);
                    apply(&registry, target).await;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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

async fn apply(registry: &Arc<Registry>, target: Target) {
    match target {
        Target::Plugin(name) => {
            for path in registry.paths_of(&name) {
                settle(&path).await;
            }
            if let Err(e) = registry.apply(&name).await {
                tracing::error!(plugin = %name, "rejected: {e}; the last good version keeps serving");
            }
        }
        Target::Config => {
            if let Some(path) = &registry.sources().config_file {
                settle(path).await;
            }
            let before = registry.names();
            if let Err(e) = registry.reload_config_file() {
                tracing::error!("rejected: {e}; the previous configuration stays in force");
                return;
            }
            let mut names = registry.names();
            names.extend(before);
            names.sort();
            names.dedup();
            for name in names {
                if let Err(e) = registry.apply(&name).await {
                    tracing::error!(plugin = %name, "rejected: {e}; the last good version keeps serving");
                }
            }
        }
    }
}
