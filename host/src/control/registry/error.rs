//! [`ReloadError`]: why the registry rejected a change to a plugin.

use std::path::PathBuf;

use crate::config::tls::TlsConfigProblem;
use crate::config::{ConfigError, Listen, ListenError};
use crate::instance::LoadError;
use crate::listener::{ListenerError, TlsError};

/// Why a change to a plugin was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A configuration file (sidecar or `--config`) is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The component did not load.
    #[error("{}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// A plugin's own `describe().listen` is not a listener address.
    #[error("plugin {plugin}: its describe().listen has a bad entry")]
    DefaultListen {
        /// Plugin name.
        plugin: String,
        /// The parse error.
        #[source]
        source: ListenError,
    },
    /// A plugin has nowhere to listen.
    #[error("plugin {0}: no listeners: give PATH@LISTEN (its describe().listen is empty)")]
    NoListeners(String),
    /// The directory its configuration grants is not there.
    #[error("plugin {plugin}: the directory it is granted, {}: {reason}", path.display())]
    BadDir {
        /// Plugin name.
        plugin: String,
        /// The directory.
        path: PathBuf,
        /// Why it cannot be granted.
        reason: &'static str,
    },
    /// The directory its configuration records into cannot be created.
    #[error("plugin {plugin}: cannot record into {}", path.display())]
    Record {
        /// Plugin name.
        plugin: String,
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A listener could not be started.
    #[error(transparent)]
    Listener(#[from] ListenerError),
    /// `proxy-protocol` without `--proxy-from`: every connection would be refused.
    #[error(
        "plugin {0}: proxy-protocol needs --proxy-from CIDR (where the load balancers connect from); without it every connection would be refused"
    )]
    ProxyWithoutSources(String),
    /// A `tls:` listener, and no certificate.
    #[error("plugin {plugin}: {listen} needs a certificate: give --tls {plugin}=CERT.pem,KEY.pem, or cert and key in its [tls] table")]
    NoCertificate {
        /// Plugin name.
        plugin: String,
        /// The listener.
        listen: Listen,
    },
    /// The TLS settings, once merged from the files and the command line, are unusable.
    #[error("plugin {plugin}")]
    TlsConfig {
        /// Plugin name.
        plugin: String,
        /// What is wrong.
        #[source]
        source: TlsConfigProblem,
    },
    /// The certificate, key or client CA files do not load.
    #[error("plugin {plugin}: tls")]
    Tls {
        /// Plugin name.
        plugin: String,
        /// Why (boxed: rustls' errors are large, and this one is rare).
        #[source]
        source: Box<TlsError>,
    },
}
