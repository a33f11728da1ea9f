//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on TCP and TLS listeners: the
//! header a load balancer sends before the client's bytes, naming the real client.
//!
//! The header is read before admission, so the per-IP limits and address rules see the
//! real client; it is peeked and then consumed exactly (never over-read), so the bytes
//! after it reach the plugin, or the TLS handshake, untouched. A header must arrive
//! within [`HEADER_TIMEOUT`]; parsing is `proxy-header`'s.

use std::net::SocketAddr;
use std::time::Duration;

use proxy_header::{ParseConfig, ProxyHeader};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long a PROXY header may take to arrive.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest header read: a v1 header is at most 107 bytes; a v2 header with TLVs
/// (HAProxy's SSL, authority, unique id) stays far below this.
const MAX_HEADER: usize = 4096;

/// Why no client address came from the header.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    /// Nothing valid within [`HEADER_TIMEOUT`].
    #[error("no complete PROXY header within {HEADER_TIMEOUT:?}")]
    Timeout,
    /// Not a PROXY header (or one this side cannot use).
    #[error("not a PROXY header: {0}")]
    Invalid(String),
    /// The connection ended or failed first.
    #[error("the connection ended before its PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY header at the start of `socket`: the client's address, or `proxy`
/// itself for a `LOCAL` header (the balancer's own health check).
pub(crate) async fn read_header(socket: &mut TcpStream, proxy: SocketAddr) -> Result<SocketAddr, HeaderError> {
    tokio::time::timeout(HEADER_TIMEOUT, read(socket, proxy)).await.map_err(|_| HeaderError::Timeout)?
}

async fn read(socket: &mut TcpStream, proxy: SocketAddr) -> Result<SocketAddr, HeaderError> {
    let config = ParseConfig { include_tlvs: false, allow_v1: true, allow_v2: true };
    let mut buf = vec![0u8; MAX_HEADER];
    let mut seen = 0;
    loop {
        let n = socket.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        match ProxyHeader::parse(&buf[..n], config) {
            Ok((header, len)) => {
                let client = header.proxied_address().map_or(proxy, |a| a.source);
                let mut consumed = vec![0u8; len];
                socket.read_exact(&mut consumed).await?;
                return Ok(client);
            }
            Err(proxy_header::Error::BufferTooShort) if n < MAX_HEADER => {
                // The rest is on its way: peek returns at once while data is queued, so
                // wait a little before looking again when nothing new came.
                if n == seen {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                seen = n;
            }
            Err(e) => return Err(HeaderError::Invalid(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (client, server, peer)
    }

    #[tokio::test]
    async fn a_v1_header_in_two_pieces_gives_the_client_and_leaves_the_data() {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 5").await.unwrap();
        let reading = tokio::spawn(async move {
            let got = read_header(&mut server, peer).await;
            (got, server)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(b"6324 2626\r\nhello").await.unwrap();
        let (got, mut server) = reading.await.unwrap();
        assert_eq!(got.unwrap(), "192.0.2.7:56324".parse().unwrap());
        let mut rest = [0u8; 5];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"hello");
    }

    #[tokio::test]
    async fn a_v2_local_header_is_the_proxy_itself_and_garbage_is_refused() {
        let (mut client, mut server, peer) = pair().await;
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend([0x20, 0x00, 0x00, 0x00]); // version 2, LOCAL, no address, length 0
        client.write_all(&v2).await.unwrap();
        assert_eq!(read_header(&mut server, peer).await.unwrap(), peer);
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(read_header(&mut server, peer).await, Err(HeaderError::Invalid(_))));
    }
}
