//! The TLS load generators of the tls scenario: the same loops as plain TCP's, over
//! TLS 1.3 connections that trust the scenario's own CA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::TcpStream;

use super::{Exchange, LoopOutcome, OP_TIMEOUT, StreamOutcome, bounded, closed_loop, connect, stream_echo_over};

/// A TLS client for the tls scenario: trusts one CA, names the server `localhost`.
#[derive(Clone)]
pub struct TlsClient(tokio_rustls::TlsConnector);

impl TlsClient {
    /// A client trusting the CA certificate in PEM file `ca`.
    pub fn new(ca: &std::path::Path) -> Result<TlsClient> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).context("reading the CA")? {
            roots.add(cert.context("reading the CA")?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient(tokio_rustls::TlsConnector::from(Arc::new(config))))
    }

    /// Connects and handshakes (a full handshake every time: no resumption is offered).
    pub async fn connect(&self, addr: SocketAddr) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from("localhost")?;
        bounded(OP_TIMEOUT, self.0.connect(name, tcp)).await.context("TLS handshake")
    }
}

/// [`rtt`] over TLS connections (handshaken once each).
pub async fn tls_rtt(addr: SocketAddr, client: TlsClient, conns: usize, duration: Duration, exchange: Exchange) -> LoopOutcome {
    closed_loop(
        conns,
        duration,
        move || {
            let client = client.clone();
            async move { client.connect(addr).await }
        },
        move |mut stream| {
            let exchange = exchange.clone();
            async move {
                let latency = exchange.run(&mut stream).await?;
                Ok((stream, latency))
            }
        },
    )
    .await
}

/// [`connrate`] over TLS: connect + full handshake + one exchange + close, per worker.
pub async fn tls_handshakes(addr: SocketAddr, client: TlsClient, workers: usize, duration: Duration, exchange: Exchange) -> LoopOutcome {
    closed_loop(
        workers,
        duration,
        || async { Ok(()) },
        move |()| {
            let (client, exchange) = (client.clone(), exchange.clone());
            async move {
                let start = Instant::now();
                let mut stream = client.connect(addr).await?;
                exchange.run(&mut stream).await?;
                drop(stream);
                Ok(((), start.elapsed()))
            }
        },
    )
    .await
}

/// [`super::stream_echo`] over TLS connections: `conns` connections writing
/// `write_size`-byte chunks for `duration`; closing the sending side sends close_notify.
pub async fn tls_stream_echo(addr: SocketAddr, client: TlsClient, conns: usize, write_size: usize, duration: Duration) -> StreamOutcome {
    stream_echo_over(conns, write_size, duration, move || {
        let client = client.clone();
        async move { Ok(tokio::io::split(client.connect(addr).await?)) }
    })
    .await
}
