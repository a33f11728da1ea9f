//! The plain tokio baselines, each run in its own process (`switchboard-bench baseline
//! KIND`) so that its RSS is its own and it competes with the load generator exactly as
//! switchboard does. Each binds 127.0.0.1:0, prints `listening NAME tcp://ADDR` like
//! `switchboard serve`, sets TCP_NODELAY on accepted sockets (as the host does) and runs
//! one task per connection on a default multi-threaded runtime. The TLS echo handshakes
//! in that task (tokio-rustls on ring, as the host) and prints `tls://ADDR`. The two
//! getfile servers speak the same protocol: one copies the file through a buffer
//! (`copy_buf`), the other hands it to the kernel (`sendfile(2)`, no copy through user
//! space: the physical reference).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::cli::{BaselineArgs, BaselineKind};

/// Welcome line of the baseline chat server (plugins/chat says "...switchboard chat server").
const CHAT_WELCOME: &[u8] = b"You're connected to the tokio baseline chat server\r\n";
/// Echo reads start at this size and double while reads fill the buffer...
const ECHO_MIN_BUF: usize = 4 << 10;
/// ...up to this size (the stream scenario writes 64 KiB at a time).
const ECHO_MAX_BUF: usize = 64 << 10;
/// getfile: read the file this much at a time (`tokio::fs` reads on a blocking thread).
const FILE_BUF: usize = 256 << 10;
/// getfile: longest accepted name line.
const MAX_NAME: u64 = 4096;
/// sendfile: most bytes one `sendfile(2)` call moves (the kernel's own cap, 0x7ffff000).
const SENDFILE_MAX: u64 = 0x7fff_f000;

/// Serves one baseline until killed.
pub async fn serve(args: BaselineArgs) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding 127.0.0.1:0")?;
    let name = match args.kind {
        BaselineKind::Echo => "tokio-echo",
        BaselineKind::Chat => "tokio-chat",
        BaselineKind::Getfile => "tokio-getfile",
        BaselineKind::Sendfile => "tokio-sendfile",
        BaselineKind::TlsEcho => "tokio-rustls-echo",
    };
    let acceptor = match (&args.kind, &args.cert, &args.key) {
        (BaselineKind::TlsEcho, Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        (BaselineKind::TlsEcho, ..) => anyhow::bail!("tls-echo needs --cert and --key"),
        _ => None,
    };
    let scheme = if acceptor.is_some() { "tls" } else { "tcp" };
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {name} {scheme}://{}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);

    let prefix: Arc<[u8]> = args.prefix.into_bytes().into();
    let dir: Arc<Path> = args.dir.unwrap_or_else(|| PathBuf::from(".")).into();
    let room = Arc::new(ChatRoom::default());
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: wait instead of spinning.
                eprintln!("{name}: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        match args.kind {
            BaselineKind::Echo => tokio::spawn(log_err(name, echo(socket, prefix.clone()))),
            BaselineKind::Chat => tokio::spawn(log_err(name, room.clone().serve(socket, peer))),
            BaselineKind::Getfile => tokio::spawn(log_err(name, getfile(socket, dir.clone()))),
            BaselineKind::Sendfile => tokio::spawn(log_err(name, sendfile(socket, dir.clone()))),
            BaselineKind::TlsEcho => {
                let (acceptor, prefix) = (acceptor.clone().expect("made above"), prefix.clone());
                tokio::spawn(log_err(name, async move { echo(acceptor.accept(socket).await?, prefix).await }))
            }
        };
    }
}

/// Runs a connection handler, printing its error (if any) to stderr.
async fn log_err(name: &'static str, f: impl Future<Output = std::io::Result<()>>) {
    if let Err(e) = f.await
        // A TLS client that closes without close_notify (the load generator's do) is an
        // UnexpectedEof: a client going away, as a reset is.
        && !matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof)
    {
        eprintln!("{name}: connection error: {e}");
    }
}

/// The TLS acceptor of the tls-echo baseline: the chain and key in PEM files, TLS 1.3
/// and 1.2 on ring (what the host's tls: listeners use).
fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>().context("reading the certificate")?;
    let key = PrivateKeyDer::from_pem_file(key).context("reading the key")?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Replies `prefix` + each chunk read (just the chunk when the prefix is empty), like
/// plugins/echo; the read buffer grows while reads fill it.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S, prefix: Arc<[u8]>) -> std::io::Result<()> {
    let mut buf = vec![0u8; ECHO_MIN_BUF];
    let mut reply = prefix.to_vec();
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return socket.shutdown().await;
        }
        if prefix.is_empty() {
            socket.write_all(&buf[..n]).await?;
        } else {
            reply.truncate(prefix.len());
            reply.extend_from_slice(&buf[..n]);
            socket.write_all(&reply).await?;
        }
        if n == buf.len() && buf.len() < ECHO_MAX_BUF {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

/// getfile.py's server protocol: `name\n` in, the file's bytes out, close, the bytes
/// copied through a [`FILE_BUF`] buffer.
async fn getfile(socket: TcpStream, dir: Arc<Path>) -> std::io::Result<()> {
    let (rd, mut wr) = socket.into_split();
    let Some(path) = requested(rd, &dir, "tokio-getfile").await? else { return Ok(()) };
    let file = tokio::fs::File::open(path).await?;
    tokio::io::copy_buf(&mut BufReader::with_capacity(FILE_BUF, file), &mut wr).await?;
    wr.shutdown().await
}

/// getfile's protocol with the bytes sent by the kernel: `sendfile(2)` from the file to
/// the (non-blocking) socket, waiting for the socket to become writable whenever its send
/// buffer is full, until the whole file is out.
async fn sendfile(mut socket: TcpStream, dir: Arc<Path>) -> std::io::Result<()> {
    let Some(path) = requested(&mut socket, &dir, "tokio-sendfile").await? else { return Ok(()) };
    let file = tokio::fs::File::open(path).await?.into_std().await;
    let len = file.metadata()?.len();
    let (from, to) = (file.as_raw_fd(), socket.as_raw_fd());
    let mut offset: libc::off_t = 0;
    while (offset as u64) < len {
        let count = (len - offset as u64).min(SENDFILE_MAX) as usize;
        socket.writable().await?;
        // try_io clears the readiness when the closure reports WouldBlock (EAGAIN).
        let sent = socket.try_io(Interest::WRITABLE, || {
            // SAFETY: `from` and `to` are open descriptors owned by `file` and `socket`,
            // both alive for the call; `offset` is a valid off_t the kernel advances.
            let n = unsafe { libc::sendfile(to, from, &mut offset, count) };
            if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n) }
        });
        match sent {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ended before its length")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    socket.shutdown().await
}

/// Reads the `name\n` line of a getfile request and returns the path it names inside
/// `dir`; `None` (after a line on stderr) for a name that is empty or not a relative path
/// without `..`.
async fn requested(rd: impl AsyncRead + Unpin, dir: &Path, server: &str) -> std::io::Result<Option<PathBuf>> {
    let mut line = Vec::new();
    BufReader::new(rd).take(MAX_NAME).read_until(b'\n', &mut line).await?;
    let name = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned();
    let path = Path::new(&name);
    if name.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        eprintln!("{server}: refused {name:?}");
        return Ok(None);
    }
    Ok(Some(dir.join(path)))
}

/// The broadcast chat room: every member's outgoing queue, by member id.
#[derive(Default)]
struct ChatRoom {
    members: Mutex<HashMap<u64, mpsc::UnboundedSender<Arc<[u8]>>>>,
    next_id: AtomicU64,
}

impl ChatRoom {
    /// Queues `msg` for every member but `from`.
    fn broadcast(&self, from: u64, msg: &[u8]) {
        let msg: Arc<[u8]> = msg.into();
        for (id, tx) in self.members.lock().expect("chat room lock").iter() {
            if *id != from {
                let _ = tx.send(msg.clone());
            }
        }
    }

    /// One client, with plugins/chat's wire format: the others hear `Client joined
    /// HOST:PORT`, then the client gets the welcome line; each non-empty line goes to the
    /// others as `[HOST:PORT] line\r\n`; `Client left HOST:PORT` when it goes.
    async fn serve(self: Arc<Self>, socket: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel::<Arc<[u8]>>();
        self.members.lock().expect("chat room lock").insert(id, tx.clone());
        self.broadcast(id, format!("Client joined {peer}\r\n").as_bytes());
        let _ = tx.send(CHAT_WELCOME.into());
        drop(tx);

        let (rd, mut wr) = socket.into_split();
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if wr.write_all(&msg).await.is_err() {
                    break;
                }
            }
        });
        let mut lines = BufReader::new(rd);
        let mut line = Vec::new();
        let result = loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) => break Ok(()),
                Ok(_) => {
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    if !text.is_empty() {
                        let mut msg = format!("[{peer}] ").into_bytes();
                        msg.extend_from_slice(text);
                        msg.extend_from_slice(b"\r\n");
                        self.broadcast(id, &msg);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.members.lock().expect("chat room lock").remove(&id);
        self.broadcast(id, format!("Client left {peer}\r\n").as_bytes());
        writer.abort();
        result
    }
}
