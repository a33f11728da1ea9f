//! TCP listeners: accept, admit, and run each connection as its own task on a fresh
//! instance.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::conversation::{self, SHUTTING_DOWN, closed_at_drain_timeout};
use super::{Paused, Shared, SocketOptions};
use crate::admission::{Refusal, Source};
use crate::guest::bindings::{Role, Transport};
use crate::guest::closer::Closer;
use crate::guest::traffic::Activity;
use crate::service::Service;
use crate::service::accounting::{Ended, ListenerStats};
use crate::session::stream::{Measures, Pace, run_stream};
use crate::util::backoff::Backoff;

/// Pending connections the kernel queues for us. tokio's default of 128 overflows when
/// thousands of clients connect at once, and every overflow costs a client a 1 s SYN retry.
pub const BACKLOG: u32 = 4096;

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
/// connections are closed at once (and counted as refused).
pub(crate) async fn run(listener: TcpListener, service: Arc<Service>, stats: Arc<ListenerStats>, shared: Shared, paused: Paused) {
    let local = listener.local_addr().map(conversation::show).unwrap_or_default();
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
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
                    continue;
                }
                start(socket, peer, &local, &service, &stats, &shared);
            }
            Err(e) => conversation::pause_after_error(&mut backoff, &service, "accept", &e, false).await,
        }
    }
}

/// Admits one accepted connection and starts its conversation; a refused one is closed
/// at once (the client sees the close instead of hanging).
fn start(socket: TcpStream, peer: std::net::SocketAddr, local: &str, service: &Arc<Service>, stats: &Arc<ListenerStats>, shared: &Shared) {
    let ticket = match shared.admission.admit(&service.gate, Source::Ip(peer.ip())) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            service.refused(stats, &conversation::show(peer), refusal);
            return;
        }
    };
    let open = stats.started();
    let _ = socket.set_nodelay(true);
    let info = conversation::info(&shared.rt, Transport::Tcp, Role::Accepted, conversation::show(peer), local.to_string());
    let (plugin, rt, task_service, task_stats) = (service.current(), shared.rt.clone(), service.clone(), stats.clone());
    let closer = Closer::new();
    let record = service.record().or_else(|| shared.record.clone());
    let recording = record.and_then(|dir| match dir.start(&plugin.name, &plugin.info.version, &info) {
        Ok(recording) => Some(recording),
        Err(e) => {
            tracing::warn!(plugin = %plugin.name, id = info.id, "not recording this connection: {e}");
            None
        }
    });
    let (entry, registered) = service.register(&info, &plugin, &closer);
    let talk = {
        let (closer, entry) = (closer.clone(), entry.clone());
        async move {
            let _held = (ticket, registered);
            let activity = Activity::counted(task_stats.traffic.clone());
            let measures =
                Measures { activity: activity.clone(), instantiation: Some(&task_stats.instantiation), table: Some(&entry.meters) };
            let outcome = match recording {
                // A recorded connection goes through the tee; the rest pay nothing for it.
                Some(rec) => {
                    run_stream(&rt, &plugin, info.clone(), rec.tee(socket.into_split()), closer.clone(), Pace::Client, measures).await
                }
                None => run_stream(&rt, &plugin, info.clone(), socket.into_split(), closer.clone(), Pace::Client, measures).await,
            };
            open.ended(Ended::of(&outcome, &closer, SHUTTING_DOWN, &activity));
            task_service.account(&info, &outcome);
        }
    };
    conversation::spawn(shared, service, Some(&entry), closed_at_drain_timeout(shared.drain_tokens(), Some(closer), talk));
}
