//! What one [`Registry::apply`](super::Registry::apply) did, and how often each plugin's
//! changes were applied or rejected.

use std::sync::Arc;

use super::Prepared;
use crate::listener::tls::TlsSetup;

/// What [`Registry::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing: the files are as last applied (several events for one write).
    Unchanged,
    /// A plugin that was not served is served now.
    Loaded,
    /// A new version replaced the served one.
    Swapped,
    /// Its files are gone: it no longer accepts.
    Removed,
    /// Only its TLS files changed: new handshakes get the new certificate.
    Rotated,
    /// No source names it, and it was not served.
    Absent,
}

/// How often a plugin's changes were applied or rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reloads {
    /// A version was loaded or swapped in (the first load included).
    pub(crate) ok: u64,
    /// A change was rejected (the previous version, if any, kept serving).
    pub(crate) rejected: u64,
    /// Only the TLS files changed, and the new ones were put in (a rotation).
    pub(crate) tls_rotated: u64,
    /// New TLS files were rejected (the previous ones, if any, kept serving).
    pub(crate) tls_rejected: u64,
}

/// What [`Registry::prepare`] found to do.
pub(super) enum Step {
    /// Nothing changed.
    Unchanged,
    /// Only the TLS files changed.
    Rotate(Arc<TlsSetup>),
    /// A version to swap in (or a new plugin to serve).
    Load(Box<Prepared>),
}
