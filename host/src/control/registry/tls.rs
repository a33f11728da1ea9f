//! The registry's side of TLS: a plugin's TLS files are read with every change to it
//! (and whenever the watcher sees them change, or a SIGHUP asks), a `tls:` listener
//! without a certificate is refused, and a change to the files alone is a rotation: the
//! new setup goes into the plugin's [`TlsSlot`] for new handshakes while open
//! connections keep the session they have. A file that does not load is rejected like a
//! bad component: the reason is logged and the previous setup keeps serving.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::change::{Change, Step};
use super::{Registry, ReloadError};
use crate::config::{Listen, PluginConfig, TlsConfig};
use crate::listener::tls::{TlsSetup, TlsSlot};

/// The TLS files (certificate, key, client CA) each plugin's configuration names.
pub(crate) type TlsFiles = BTreeMap<String, Vec<PathBuf>>;

impl Registry {
    /// The TLS files every plugin names, told again whenever they change.
    pub(crate) fn tls_files(&self) -> tokio::sync::watch::Receiver<TlsFiles> {
        self.tls_files.subscribe()
    }

    /// Notes the TLS files `config` names for plugin `name` (the watcher follows them,
    /// even while they do not load: fixing one is a change like any other).
    pub(super) fn follow_tls_files(&self, name: &str, config: &PluginConfig) {
        let files = config.tls.as_ref().map(TlsConfig::files).unwrap_or_default();
        self.tls_files.send_if_modified(|all| match files.is_empty() {
            true => all.remove(name).is_some(),
            false if all.get(name) == Some(&files) => false,
            false => {
                all.insert(name.to_string(), files);
                true
            }
        });
    }

    /// Reads the TLS files of plugin `name`'s `config`; `None` if it has no certificate.
    pub(super) fn load_tls(&self, name: &str, config: &PluginConfig) -> Result<Option<Arc<TlsSetup>>, ReloadError> {
        let Some(table) = &config.tls else { return Ok(None) };
        let settings = table.settings().map_err(|source| ReloadError::TlsConfig { plugin: name.to_string(), source })?;
        let Some(settings) = settings else { return Ok(None) };
        let setup = TlsSetup::load(&settings).map_err(|e| ReloadError::Tls { plugin: name.to_string(), source: Box::new(e) })?;
        Ok(Some(Arc::new(setup)))
    }

    /// Puts a rotated setup in for plugin `name`'s new handshakes.
    pub(super) fn rotate(&self, name: &str, setup: Arc<TlsSetup>) -> Change {
        let entries = self.entries.lock();
        let Some(entry) = entries.get(name) else { return Change::Unchanged };
        put_in(name, &entry.tls, Some(setup));
        Change::Rotated
    }
}

/// What to do for a plugin whose component and configuration are unchanged: rotate if
/// its TLS files changed.
pub(super) fn step(slot: &TlsSlot, fresh: Option<Arc<TlsSetup>>) -> Step {
    match (slot.current(), fresh) {
        (Some(serving), Some(fresh)) if serving.same_as(&fresh) => Step::Unchanged,
        (_, Some(fresh)) => Step::Rotate(fresh),
        (_, None) => Step::Unchanged,
    }
}

/// Refuses a `tls:` listener when the plugin has no certificate.
pub(super) fn needs_certificate(name: &str, listens: &[Listen], tls: Option<&Arc<TlsSetup>>) -> Result<(), ReloadError> {
    match listens.iter().find(|l| matches!(l, Listen::Tls { .. })) {
        Some(listen) if tls.is_none() => Err(ReloadError::NoCertificate { plugin: name.to_string(), listen: listen.clone() }),
        _ => Ok(()),
    }
}

/// Puts `setup` into `slot` for new handshakes, and says so.
pub(super) fn put_in(name: &str, slot: &TlsSlot, setup: Option<Arc<TlsSetup>>) {
    let fresh = setup.as_ref().map(|s| s.fingerprint.clone());
    match (slot.set(setup), fresh) {
        (Some(old), Some(new)) if old.fingerprint != new => tracing::info!(
            plugin = %name, cert_sha256 = %new, previous_cert_sha256 = %old.fingerprint,
            "tls certificate rotated: new handshakes get the new certificate, open connections keep theirs"
        ),
        (Some(_), Some(new)) => {
            tracing::info!(plugin = %name, cert_sha256 = %new, "tls files re-read: same certificate, new key or client CAs")
        }
        (None, Some(new)) => tracing::info!(plugin = %name, cert_sha256 = %new, "tls certificate loaded"),
        (_, None) => {}
    }
}
