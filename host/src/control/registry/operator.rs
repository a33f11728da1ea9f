//! What the operator sees of the registry and does to it through the admin API: the
//! served plugins' state, pausing and resuming listeners, rolling a plugin back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::{Registry, ServedListener};
use crate::instance::plugin::Plugin;
use crate::listener::{ListenerError, check_world};
use crate::service::Service;

/// What the admin API shows of a served plugin.
pub(crate) struct PluginState {
    /// Its service (current version, counters, quarantine, open connections).
    pub(crate) service: Arc<Service>,
    /// Its listeners: as configured, as bound, and whether paused.
    pub(crate) listeners: Vec<ListenerState>,
    /// The version a rollback returns to.
    pub(crate) previous: Option<Arc<Plugin>>,
    /// When the version serving now was put in.
    pub(crate) since: SystemTime,
}

/// What the admin API shows of a listener.
pub(crate) struct ListenerState {
    /// As configured (`tcp:127.0.0.1:0`).
    pub(crate) listen: String,
    /// As bound (`tcp://127.0.0.1:40123`).
    pub(crate) url: String,
    /// Whether it is paused.
    pub(crate) paused: bool,
}

/// Why an operator's request about a plugin or a listener cannot be done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OperatorError {
    /// No served plugin has that name.
    #[error("no plugin named {0:?} is served")]
    NoPlugin(String),
    /// No plugin or listener has that name.
    #[error(
        "no plugin or listener named {0:?} (give a plugin name, or a listener as its `listening` line shows it, e.g. tcp://127.0.0.1:50007)"
    )]
    NoListener(String),
    /// Only serial lines were named: they take no new conversations to stop.
    #[error("{0:?} has only serial lines, which are one conversation each and cannot be paused (stop the plugin, or close its connection)")]
    SerialOnly(String),
    /// There is no previous version to go back to.
    #[error("plugin {0:?} has no previous version to roll back to (it has not been swapped since it was loaded)")]
    NoPrevious(String),
    /// The previous version cannot serve the listeners the plugin has now.
    #[error("cannot roll back")]
    Unsuitable(#[source] ListenerError),
}

impl Registry {
    /// What the admin API shows of every served plugin, by name.
    pub(crate) fn states(&self) -> Vec<PluginState> {
        let entries = self.entries.lock();
        entries
            .values()
            .map(|e| PluginState {
                service: e.service.clone(),
                listeners: e
                    .listeners
                    .iter()
                    .map(|l| ListenerState { listen: l.listen.to_string(), url: l.url.clone(), paused: l.paused.load(Ordering::Relaxed) })
                    .collect(),
                previous: e.previous.clone(),
                since: e.since,
            })
            .collect()
    }

    /// Pauses (or resumes) the listeners of plugin `name`, or the one listener named
    /// `name` (its `listening` URL, `tcp://HOST:PORT`, or `tcp:HOST:PORT`); returns the
    /// URLs of the listeners switched.
    pub(crate) fn set_paused(&self, name: &str, paused: bool) -> Result<Vec<String>, OperatorError> {
        let entries = self.entries.lock();
        let as_url = name.replacen(':', "://", 1);
        let chosen: Vec<&ServedListener> = match entries.get(name) {
            Some(entry) => entry.listeners.iter().collect(),
            None => entries
                .values()
                .flat_map(|e| &e.listeners)
                .filter(|l| l.url == name || (!name.contains("://") && l.url == as_url))
                .collect(),
        };
        if chosen.is_empty() {
            return Err(OperatorError::NoListener(name.to_string()));
        }
        // A serial line is one conversation, not a stream of new ones: nothing to pause.
        let chosen: Vec<&ServedListener> = chosen.into_iter().filter(|l| !l.url.starts_with("serial://")).collect();
        if chosen.is_empty() {
            return Err(OperatorError::SerialOnly(name.to_string()));
        }
        for listener in &chosen {
            listener.paused.store(paused, Ordering::Relaxed);
            let verb = if paused { "paused: new connections are refused; open ones go on" } else { "resumed" };
            tracing::info!(listener = %listener.url, "{verb}");
        }
        Ok(chosen.iter().map(|l| l.url.clone()).collect())
    }

    /// Puts the version before back in for plugin `name` (the one now serving becomes
    /// the version a second rollback returns to); returns (from, to) versions. It holds
    /// until the plugin's files change (or a reload) again.
    pub(crate) async fn rollback(&self, name: &str) -> Result<(Arc<Plugin>, Arc<Plugin>), OperatorError> {
        let turn = self.turns.lock().entry(name.to_string()).or_default().clone();
        let _turn = turn.lock().await;
        let mut entries = self.entries.lock();
        let entry = entries.get_mut(name).ok_or_else(|| OperatorError::NoPlugin(name.to_string()))?;
        let previous = entry.previous.clone().ok_or_else(|| OperatorError::NoPrevious(name.to_string()))?;
        for listener in &entry.listeners {
            check_world(&previous, &listener.listen).map_err(OperatorError::Unsuitable)?;
        }
        let now = entry.service.swap(previous.clone());
        entry.sha256 = previous.sha256.clone();
        entry.previous = Some(now.clone());
        entry.since = SystemTime::now();
        tracing::info!(
            plugin = %name, version = %previous.info.version, hash = &previous.sha256[..12], from_version = %now.info.version,
            from_hash = &now.sha256[..12], "rolled back: new connections get the previous version"
        );
        Ok((now, previous))
    }
}
