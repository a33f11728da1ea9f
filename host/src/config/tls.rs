//! A plugin's TLS settings (the `[tls]` table of a sidecar or `--config` table, and
//! `serve --tls NAME=CERT,KEY`), as written and as resolved for its `tls:` listeners:
//!
//! ```toml
//! [tls]
//! cert = "server.pem"            # the certificate chain, leaf first (PEM)
//! key = "server.key"             # its private key (PEM: PKCS#8, PKCS#1 or SEC1)
//! client-ca = "clients-ca.pem"   # optional: ask clients for a certificate from these CAs
//! client-cert = "required"       # or "optional" (default with client-ca: required)
//! handshake-timeout = "10s"
//! alpn = ["h2", "http/1.1"]      # optional: ALPN protocols offered, preferred first
//! ```
//!
//! Paths are relative to the file that names them. The files themselves are read by the
//! listener layer, which also follows them for rotation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::defaults::TLS_HANDSHAKE_TIMEOUT;
use super::units::{Dur, ValueError};

/// Whether a TLS listener asks its clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCert {
    /// A client without a certificate from `client-ca` is refused.
    Required,
    /// A client may present one (then it must be valid) or none.
    Optional,
}

impl ClientCert {
    /// As the configuration and the metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            ClientCert::Required => "required",
            ClientCert::Optional => "optional",
        }
    }
}

/// The `[tls]` table as written: every key optional, so the command line's `--tls` can
/// override `cert`/`key` alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// The certificate chain (PEM), leaf first.
    pub cert: Option<PathBuf>,
    /// The private key of the leaf certificate (PEM).
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// `required` or `optional`; only with `client-ca`.
    pub client_cert: Option<ClientCert>,
    /// How long a client may take to finish the handshake (default 10s).
    pub handshake_timeout: Option<String>,
    /// ALPN protocols the listener agrees to, preferred first (none: no ALPN).
    pub alpn: Option<Vec<String>>,
}

/// TLS settings resolved: what a `tls:` listener is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// Client certificates: the CA file and whether one is required.
    pub clients: Option<(PathBuf, ClientCert)>,
    /// How long a client may take to finish the handshake.
    pub handshake_timeout: Duration,
    /// ALPN protocols agreed to, preferred first; empty: no ALPN.
    pub alpn: Vec<String>,
}

/// A `[tls]` table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigProblem {
    /// `cert` without `key`, or the other way round.
    #[error("[tls] has {has} but no {missing}: give both cert and key (PEM files), or --tls NAME=CERT,KEY")]
    Incomplete {
        /// The key given.
        has: &'static str,
        /// The key missing.
        missing: &'static str,
    },
    /// `client-cert` without `client-ca`.
    #[error("[tls] client-cert = {0:?} needs client-ca = \"CA.pem\" (the CAs client certificates must come from)")]
    ClientCertWithoutCa(&'static str),
    /// `handshake-timeout` does not parse, or is zero.
    #[error("[tls] handshake-timeout")]
    Timeout(#[source] ValueError),
    /// An `alpn` entry is empty or longer than 255 bytes (what TLS can carry).
    #[error("[tls] alpn = [.., {0:?}, ..]: a protocol name is 1 to 255 bytes, e.g. \"h2\"")]
    BadAlpn(String),
}

impl TlsConfig {
    /// The table `--tls NAME=CERT,KEY` stands for.
    pub fn cert_and_key(cert: PathBuf, key: PathBuf) -> TlsConfig {
        TlsConfig { cert: Some(cert), key: Some(key), ..TlsConfig::default() }
    }

    /// Makes relative paths relative to `base` (the directory of the file naming them).
    pub fn resolve_relative(&mut self, base: &Path) {
        for path in [&mut self.cert, &mut self.key, &mut self.client_ca].into_iter().flatten() {
            *path = base.join(&*path);
        }
    }

    /// `self` with the keys `over` sets taken from `over`.
    pub fn overridden_by(&self, over: &TlsConfig) -> TlsConfig {
        TlsConfig {
            cert: over.cert.clone().or_else(|| self.cert.clone()),
            key: over.key.clone().or_else(|| self.key.clone()),
            client_ca: over.client_ca.clone().or_else(|| self.client_ca.clone()),
            client_cert: over.client_cert.or(self.client_cert),
            handshake_timeout: over.handshake_timeout.clone().or_else(|| self.handshake_timeout.clone()),
            alpn: over.alpn.clone().or_else(|| self.alpn.clone()),
        }
    }

    /// The files it names (for the watcher), whether or not they exist.
    pub fn files(&self) -> Vec<PathBuf> {
        [&self.cert, &self.key, &self.client_ca].into_iter().flatten().cloned().collect()
    }

    /// The settings a `tls:` listener gets; `None` if no certificate is configured.
    pub fn settings(&self) -> Result<Option<TlsSettings>, TlsConfigProblem> {
        let handshake_timeout = match &self.handshake_timeout {
            None => TLS_HANDSHAKE_TIMEOUT,
            Some(text) => match text.parse::<Dur>().map_err(TlsConfigProblem::Timeout)? {
                Dur(d) if d.is_zero() => {
                    return Err(TlsConfigProblem::Timeout(ValueError::new(text, "a handshake needs a timeout above 0, e.g. 10s")));
                }
                Dur(d) => d,
            },
        };
        let clients = match (&self.client_ca, self.client_cert) {
            (Some(ca), mode) => Some((ca.clone(), mode.unwrap_or(ClientCert::Required))),
            (None, Some(mode)) => return Err(TlsConfigProblem::ClientCertWithoutCa(mode.name())),
            (None, None) => None,
        };
        let alpn = self.alpn.clone().unwrap_or_default();
        if let Some(bad) = alpn.iter().find(|p| p.is_empty() || p.len() > 255) {
            return Err(TlsConfigProblem::BadAlpn(bad.clone()));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(TlsSettings { cert: cert.clone(), key: key.clone(), clients, handshake_timeout, alpn })),
            (Some(_), None) => Err(TlsConfigProblem::Incomplete { has: "cert", missing: "key" }),
            (None, Some(_)) => Err(TlsConfigProblem::Incomplete { has: "key", missing: "cert" }),
            (None, None) if clients.is_some() || self.handshake_timeout.is_some() || !alpn.is_empty() => {
                Err(TlsConfigProblem::Incomplete { has: "client, timeout or alpn settings", missing: "cert and key" })
            }
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TlsConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn a_full_table_resolves() {
        let mut table =
            parse("cert = \"c.pem\"\nkey = \"k.pem\"\nclient-ca = \"ca.pem\"\nclient-cert = \"optional\"\nhandshake-timeout = \"3s\"")
                .unwrap();
        table.resolve_relative(Path::new("/etc/sb"));
        let s = table.settings().unwrap().unwrap();
        assert_eq!((s.cert.as_path(), s.key.as_path()), (Path::new("/etc/sb/c.pem"), Path::new("/etc/sb/k.pem")));
        assert_eq!(s.clients, Some((PathBuf::from("/etc/sb/ca.pem"), ClientCert::Optional)));
        assert_eq!(s.handshake_timeout, Duration::from_secs(3));
        assert_eq!(table.files().len(), 3);
    }

    #[test]
    fn defaults_and_overrides() {
        let file = parse("cert = \"a.pem\"\nkey = \"a.key\"\nclient-ca = \"ca.pem\"").unwrap();
        let flag = TlsConfig::cert_and_key("b.pem".into(), "b.key".into());
        let merged = file.overridden_by(&flag).settings().unwrap().unwrap();
        assert_eq!(merged.cert, PathBuf::from("b.pem"));
        assert_eq!(merged.clients.unwrap().1, ClientCert::Required, "a client CA alone means required");
        assert_eq!(merged.handshake_timeout, TLS_HANDSHAKE_TIMEOUT);
        assert_eq!(TlsConfig::default().settings(), Ok(None));
    }

    #[test]
    fn unusable_tables_say_what_to_do() {
        let err = parse("cert = \"a.pem\"").unwrap().settings().unwrap_err().to_string();
        assert!(err.contains("has cert but no key"), "{err}");
        let err = parse("cert = \"a\"\nkey = \"b\"\nclient-cert = \"required\"").unwrap().settings().unwrap_err().to_string();
        assert!(err.contains("needs client-ca"), "{err}");
        let err = parse("cert = \"a\"\nkey = \"b\"\nalpn = [\"h2\", \"\"]").unwrap().settings().unwrap_err();
        assert_eq!(err, TlsConfigProblem::BadAlpn(String::new()));
        let s = parse("cert = \"a\"\nkey = \"b\"\nalpn = [\"h2\", \"echo/1\"]").unwrap().settings().unwrap().unwrap();
        assert_eq!(s.alpn, ["h2", "echo/1"]);
        let err = parse("cert = \"a\"\nkey = \"b\"\nhandshake-timeout = \"0s\"").unwrap().settings().unwrap_err();
        assert!(matches!(err, TlsConfigProblem::Timeout(_)), "{err:?}");
        assert!(parse("client-cert = \"sometimes\"").is_err());
        assert!(parse("certificate = \"a\"").is_err());
    }
}
