//! TLS termination for `tls:` listeners (rustls on the ring provider): the certificate
//! chain, key and client CAs read from PEM files ([`TlsSetup::load`]), the setup every
//! new handshake takes ([`TlsSlot`], swapped whole when the files change: open
//! connections keep the session they have), and the handshake itself with its timeout
//! and the reason a failed one is counted under ([`handshake`]).
//!
//! The handshake runs in the connection's own task after admission and before the
//! instance is made, so a slow or hostile client holds an admission ticket (it counts
//! against every limit like any connection) but never an instance.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::{ClientCert, TlsSettings};
use crate::guest::bindings::TlsSession;
use crate::guest::closer::Closer;
use crate::guest::tls::peer_certificate;
use crate::service::handshakes::{ClientCertCheck, HandshakeFailure};

/// Why a plugin's certificate, key or client CAs cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the {what} file {}: check the path and that this user may read it", path.display())]
    Read {
        /// Which file (`certificate`, `key`, `client CA`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("the {what} file {} is not valid PEM", path.display())]
    Pem {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: pem::Error,
    },
    /// The certificate (or client CA) file holds no certificate.
    #[error("the {what} file {} holds no certificate: give a PEM file with -----BEGIN CERTIFICATE----- blocks (leaf first)", path.display())]
    NoCertificate {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("the key file {} holds no private key: give a PEM PRIVATE KEY (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY block", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not the certificate's.
    #[error("the key in {} does not match the certificate in {}: give the key the certificate was issued for", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The key cannot be used (an unsupported algorithm, a damaged key).
    #[error("the key in {} cannot be used (RSA, ECDSA P-256/P-384 and Ed25519 keys can)", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A certificate does not parse.
    #[error("the {what} file {} holds a certificate that cannot be used", path.display())]
    BadCertificate {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS")]
    Setup(#[source] rustls::Error),
    /// The client certificate verifier cannot be built.
    #[error("cannot verify client certificates with the CAs in {}", path.display())]
    Verifier {
        /// The client CA file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

/// Everything a handshake needs, read from the files at one moment.
pub(crate) struct TlsSetup {
    acceptor: TlsAcceptor,
    timeout: Duration,
    clients: Option<ClientCert>,
    /// SHA-256 over the files' contents and the settings: equal digests, equal setups.
    digest: [u8; 32],
    /// The leaf certificate's SHA-256 fingerprint (hex, as `openssl x509 -fingerprint`
    /// shows it without colons).
    pub(crate) fingerprint: String,
}

fn read(what: &'static str, path: &Path, digest: &mut Sha256) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })?;
    digest.update((bytes.len() as u64).to_le_bytes());
    digest.update(&bytes);
    Ok(bytes)
}

fn certificates(what: &'static str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|source| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what, path: path.to_path_buf() });
    }
    Ok(certs)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TlsSetup {
    /// Reads the PEM files `settings` names and builds the server configuration: TLS 1.3
    /// and 1.2, the chain and key, and a verifier of client certificates if asked for.
    pub(crate) fn load(settings: &TlsSettings) -> Result<TlsSetup, TlsError> {
        let mut digest = Sha256::new();
        let (cert_path, key_path) = (&settings.cert, &settings.key);
        let chain = certificates("certificate", cert_path, &read("certificate", cert_path, &mut digest)?)?;
        let key_pem = read("key", key_path, &mut digest)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoKey { path: key_path.clone() },
            source => TlsError::Pem { what: "key", path: key_path.clone(), source },
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Setup)?;
        let builder = match &settings.clients {
            None => builder.with_no_client_auth(),
            Some((ca_path, mode)) => {
                digest.update(mode.name());
                let cas = certificates("client CA", ca_path, &read("client CA", ca_path, &mut digest)?)?;
                let mut roots = RootCertStore::empty();
                for ca in cas {
                    roots.add(ca).map_err(|source| TlsError::BadCertificate { what: "client CA", path: ca_path.clone(), source })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match mode {
                    ClientCert::Required => verifier,
                    ClientCert::Optional => verifier.allow_unauthenticated(),
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|source| TlsError::Verifier { path: ca_path.clone(), source })?)
            }
        };
        let fingerprint = hex(&Sha256::digest(&chain[0]));
        let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch { cert: cert_path.clone(), key: key_path.clone() }
            }
            rustls::Error::InvalidCertificate(_) => TlsError::BadCertificate { what: "certificate", path: cert_path.clone(), source: e },
            source => TlsError::BadKey { path: key_path.clone(), source },
        })?;
        config.alpn_protocols = settings.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        digest.update(settings.handshake_timeout.as_nanos().to_le_bytes());
        for protocol in &settings.alpn {
            digest.update(protocol.len().to_le_bytes());
            digest.update(protocol);
        }
        Ok(TlsSetup {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            timeout: settings.handshake_timeout,
            clients: settings.clients.as_ref().map(|(_, mode)| *mode),
            digest: digest.finalize().into(),
            fingerprint,
        })
    }

    /// Whether `other` was read from the same contents with the same settings.
    pub(crate) fn same_as(&self, other: &TlsSetup) -> bool {
        self.digest == other.digest
    }
}

/// The setup a plugin's `tls:` listeners hand new handshakes: one per plugin, shared by
/// its listeners, replaced whole when the files change.
#[derive(Clone, Default)]
pub(crate) struct TlsSlot(Arc<RwLock<Option<Arc<TlsSetup>>>>);

impl TlsSlot {
    /// The setup new handshakes get now.
    pub(crate) fn current(&self) -> Option<Arc<TlsSetup>> {
        self.0.read().clone()
    }

    /// Puts `setup` in for new handshakes; returns the one it replaces.
    pub(crate) fn set(&self, setup: Option<Arc<TlsSetup>>) -> Option<Arc<TlsSetup>> {
        std::mem::replace(&mut *self.0.write(), setup)
    }
}

/// A completed handshake: the stream, and what became of the client certificate (if
/// the listener asks for one).
pub(crate) type Handshaken = (TlsStream<TcpStream>, Option<ClientCertCheck>);

/// Runs the server side of the handshake on `socket`, within the setup's timeout; a
/// close through `closer` (the drain running out) ends it too.
pub(crate) async fn handshake(setup: &TlsSetup, socket: TcpStream, closer: &Closer) -> Result<Handshaken, (HandshakeFailure, String)> {
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(setup.timeout, setup.acceptor.accept(socket)) => accepted,
        () = closer.closed() => return Err((HandshakeFailure::Shutdown, closer.reason().unwrap_or_default())),
    };
    let stream = match accepted {
        Err(_) => return Err((HandshakeFailure::Timeout, format!("not finished within {:?}", setup.timeout))),
        Ok(Err(e)) => return Err((classify(&e), e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    let check = setup.clients.map(|_| match stream.get_ref().1.peer_certificates() {
        Some(certs) if !certs.is_empty() => ClientCertCheck::Verified,
        _ => ClientCertCheck::Absent,
    });
    Ok((stream, check))
}

/// What the plugin may learn of a completed handshake (`switchboard:plugin/tls`).
pub(crate) fn session_of(conn: &rustls::ServerConnection) -> TlsSession {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let cipher_suite =
        conn.negotiated_cipher_suite().map(|s| s.suite().as_str().map_or_else(|| format!("{:?}", s.suite()), str::to_string));
    TlsSession {
        server_name: conn.server_name().map(str::to_string),
        alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
        version,
        cipher_suite: cipher_suite.unwrap_or_default(),
        client_certificate: conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| peer_certificate(leaf, hex(&Sha256::digest(leaf)))),
    }
}

/// The reason a failed handshake is counted under.
fn classify(e: &io::Error) -> HandshakeFailure {
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return HandshakeFailure::Closed;
    };
    use rustls::AlertDescription as Alert;
    match tls {
        rustls::Error::NoCertificatesPresented => HandshakeFailure::NoClientCert,
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => HandshakeFailure::ExpiredClientCert,
        rustls::Error::InvalidCertificate(_) => HandshakeFailure::BadClientCert,
        rustls::Error::AlertReceived(
            Alert::BadCertificate | Alert::UnknownCA | Alert::CertificateExpired | Alert::CertificateUnknown | Alert::AccessDenied,
        ) => HandshakeFailure::ServerCertRefused,
        _ => HandshakeFailure::Protocol,
    }
}
