//! TCP listeners: accept, admit, and run each connection as its own task on a fresh
//! instance; on a `tls:` listener the task first runs the TLS handshake (after
//! admission, before the instance), and the plugin gets the decrypted stream. A plain
//! connection's halves go to the plugin as they are: it pays nothing for TLS.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::conversation::{self, SHUTTING_DOWN, closed_at_drain_timeout};
use super::tls::{self, TlsSlot};
use super::{Paused, Shared, SocketOptions, proxy};
use crate::admission::{Refusal, Source};
use crate::guest::bindings::{ConnectionInfo, Role, TlsSession, Transport};
use crate::guest::closer::Closer;
use crate::guest::traffic::Activity;
use crate::instance::plugin::Plugin;
use crate::instance::runtime::Runtime;
use crate::service::Service;
use crate::service::accounting::{Ended, ListenerStats};
use crate::service::connections::Connection;
use crate::session::Outcome;
use crate::session::record::RecordDir;
use crate::session::stream::{Measures, Pace, run_stream};
use crate::util::backoff::Backoff;

/// Pending connections the kernel queues for us. tokio's default of 128 overflows when
/// thousands of clients connect at once, and every overflow costs a client a 1 s SYN retry.
pub const BACKLOG: u32 = 4096;
/// PROXY headers one listener waits for at once; beyond, connections are refused.
const MAX_PENDING_HEADERS: usize = 1024;

/// Binds `host:port` (the first address it resolves to) with the socket options of
/// `options` (`SO_REUSEPORT`, `IPV6_V6ONLY`).
pub(crate) async fn bind(host: &str, port: u16, options: SocketOptions) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} resolves to no address")))?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    options.apply(&socket2::SockRef::from(&socket), addr)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts until the service stops, counting into `stats`; while `paused`, accepted
/// connections are closed at once (and counted as refused). With `tls`, every connection
/// is a TLS one, handshaken with the setup in the slot when it was accepted.
pub(crate) async fn run(
    listener: TcpListener,
    service: Arc<Service>,
    stats: Arc<ListenerStats>,
    shared: Shared,
    paused: Paused,
    tls: Option<TlsSlot>,
) {
    let local = listener.local_addr().map(conversation::show).unwrap_or_default();
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
    let pending_headers = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HEADERS));
    loop {
        let accepted = tokio::select! {
            () = service.stopped() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                backoff.reset();
                if paused.load(Ordering::Relaxed) {
                    service.refused(&stats, &conversation::show(peer), Refusal::Paused);
                    say_busy(&socket, &service, tls.is_some());
                    continue;
                }
                if service.proxy_protocol() {
                    proxied(socket, peer, &local, &service, &stats, &shared, &tls, &pending_headers);
                    continue;
                }
                start(socket, peer, &local, &service, &stats, &shared, tls.as_ref());
            }
            Err(e) => conversation::pause_after_error(&mut backoff, &service, "accept", &e, false).await,
        }
    }
}

/// The plugin's `busy` line to a client refused at admission, if it has one and the
/// listener is plain TCP: one non-blocking write into the fresh socket's empty send
/// buffer (it never waits on the client), then the close.
fn say_busy(socket: &TcpStream, service: &Service, tls: bool) {
    if let (Some(line), false) = (service.busy(), tls) {
        let _ = socket.try_write(&line);
    }
}

/// A connection to a PROXY-protocol listener: from a `--proxy-from` source, its header is
/// read in a task of its own (bounded by the header timeout and by
/// [`MAX_PENDING_HEADERS`] per listener), then it starts as if it came from the client
/// the header names. From anywhere else, or without a valid header, it is refused.
#[allow(clippy::too_many_arguments)]
fn proxied(
    mut socket: TcpStream,
    proxy: std::net::SocketAddr,
    local: &str,
    service: &Arc<Service>,
    stats: &Arc<ListenerStats>,
    shared: &Shared,
    tls: &Option<TlsSlot>,
    pending: &Arc<tokio::sync::Semaphore>,
) {
    if !shared.proxy_from.iter().any(|cidr| cidr.contains(proxy.ip().to_canonical())) {
        service.refused(stats, &conversation::show(proxy), Refusal::ProxyUntrusted);
        return;
    }
    let Ok(permit) = pending.clone().try_acquire_owned() else {
        service.refused(stats, &conversation::show(proxy), Refusal::ProxyHeader);
        return;
    };
    let (local, service, stats, task_shared, tls) = (local.to_string(), service.clone(), stats.clone(), shared.clone(), tls.clone());
    shared.tracker.spawn(async move {
        let read = proxy::read_header(&mut socket, proxy).await;
        drop(permit);
        match read {
            Ok(client) => start(socket, client, &local, &service, &stats, &task_shared, tls.as_ref()),
            Err(e) => {
                tracing::debug!(plugin = %service.name(), proxy = %conversation::show(proxy), "PROXY header refused: {e}");
                service.refused(&stats, &conversation::show(proxy), Refusal::ProxyHeader);
            }
        }
    });
}

/// Admits one accepted connection and starts its conversation; a refused one is closed
/// at once (the client sees the close instead of hanging).
fn start(
    socket: TcpStream,
    peer: std::net::SocketAddr,
    local: &str,
    service: &Arc<Service>,
    stats: &Arc<ListenerStats>,
    shared: &Shared,
    tls: Option<&TlsSlot>,
) {
    let ticket = match shared.admission.admit(&service.gate, Source::Ip(peer.ip())) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            service.refused(stats, &conversation::show(peer), refusal);
            say_busy(&socket, service, tls.is_some());
            return;
        }
    };
    // The setup current now is this connection's, whatever a rotation does meanwhile.
    let setup = match tls.map(TlsSlot::current) {
        Some(None) => {
            tracing::error!(plugin = %service.name(), "tls listener without a certificate: connection closed");
            return;
        }
        Some(Some(setup)) => Some(setup),
        None => None,
    };
    let open = stats.started();
    let _ = socket.set_nodelay(true);
    let info = conversation::info(&shared.rt, Transport::Tcp, Role::Accepted, conversation::show(peer), local.to_string());
    let plugin = service.current();
    if let Some(after) = plugin.limits.keepalive {
        let probes = socket2::TcpKeepalive::new().with_time(after).with_interval(after);
        if let Err(e) = socket2::SockRef::from(&socket).set_tcp_keepalive(&probes) {
            tracing::warn!(plugin = %service.name(), "cannot set TCP keepalive: {e}");
        }
    }
    let closer = Closer::new();
    let record = service.record().or_else(|| shared.record.clone());
    let (entry, registered) = service.register(&info, &plugin, &closer, setup.is_some());
    let (rt, task_service, task_stats) = (shared.rt.clone(), service.clone(), stats.clone());
    let talk = {
        let (closer, entry) = (closer.clone(), entry.clone());
        async move {
            let _held = (ticket, registered);
            let activity = Activity::counted(task_stats.traffic.clone());
            let talk = Talk { rt: &rt, plugin: &plugin, info: &info, closer: &closer, stats: &task_stats, entry: &entry, record };
            let outcome = match setup {
                None => talk.run(socket.into_split(), &activity, "tcp", None).await,
                // Boxed, handshake and all: a plain connection's task does not carry the
                // room of the TLS futures (its task lives as long as the connection).
                Some(setup) => {
                    let over_tls = async {
                        let (stream, client_cert) = tls::handshake(&setup, socket, &closer).await?;
                        task_stats.handshakes.completed(client_cert);
                        // Only a plugin that imports `tls` can ask: the others pay nothing for it.
                        let session = plugin.imports_tls().then(|| tls::session_of(stream.get_ref().1));
                        Ok(talk.run(tokio::io::split(stream), &activity, "tls", session).await)
                    };
                    match Box::pin(over_tls).await {
                        Ok(outcome) => outcome,
                        Err((why, detail)) => {
                            task_stats.handshakes.failed(why);
                            task_service.handshake_failed(&info, why, &detail);
                            open.ended(Ended::Handshake);
                            return;
                        }
                    }
                }
            };
            let ended = Ended::of(&outcome, &closer, SHUTTING_DOWN, &activity);
            task_service.account(&info, &outcome);
            // Last, so that a connection counted closed is counted in full.
            open.ended(ended);
        }
    };
    conversation::spawn(shared, service, Some(&entry), closed_at_drain_timeout(shared.drain_tokens(), Some(closer), Box::pin(talk)));
}

/// One accepted connection's conversation, once its byte stream is plain.
struct Talk<'a> {
    rt: &'a Arc<Runtime>,
    plugin: &'a Arc<Plugin>,
    info: &'a ConnectionInfo,
    closer: &'a Closer,
    stats: &'a ListenerStats,
    entry: &'a Connection,
    record: Option<RecordDir>,
}

impl Talk<'_> {
    /// Runs the plugin over `halves` (recorded if the plugin or `--record` asks for it).
    async fn run<R, W>(self, halves: (R, W), activity: &Arc<Activity>, transport: &'static str, tls: Option<TlsSession>) -> Outcome
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let Talk { rt, plugin, info, closer, stats, entry, record } = self;
        let measures =
            Measures { activity: activity.clone(), instantiation: Some(&stats.instantiation), table: Some(&entry.meters), transport, tls };
        let recording = record.and_then(|dir| match dir.start(&plugin.name, &plugin.info.version, info, transport) {
            Ok(recording) => Some(recording),
            Err(e) => {
                tracing::warn!(plugin = %plugin.name, id = info.id, "not recording this connection: {e}");
                None
            }
        });
        match recording {
            // A recorded connection goes through the tee; the rest pay nothing for it.
            Some(rec) => run_stream(rt, plugin, info.clone(), rec.tee(halves), closer.clone(), Pace::Client, measures).await,
            None => run_stream(rt, plugin, info.clone(), halves, closer.clone(), Pace::Client, measures).await,
        }
    }
}
