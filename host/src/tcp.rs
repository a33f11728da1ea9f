//! TCP listeners: accept, and run each connection as its own task on a fresh instance.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use crate::backoff::Backoff;
use crate::bindings::{ConnectionInfo, Role, Transport};
use crate::closer::Closer;
use crate::metrics::Counters;
use crate::service::{Ctx, Service};
use crate::session;

/// Pending connections the kernel queues for us. tokio's default of 128 overflows when
/// thousands of clients connect at once, and every overflow costs a client a 1 s SYN retry.
pub const BACKLOG: u32 = 4096;

/// Binds `host:port` (the first address it resolves to).
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} resolves to no address")))?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts until the service stops.
pub async fn run(listener: TcpListener, service: Arc<Service>, ctx: Ctx) {
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            () = service.stopped() => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(conn) => {
                backoff.reset();
                conn
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: back off instead of spinning; never stop.
                let pause = backoff.next_pause();
                tracing::warn!(plugin = %service.name(), "accept failed: {e}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let ticket = match ctx.admission.admit(&service.gate, peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                // Closed at once: the client sees the close instead of hanging.
                service.refused(peer, refusal.reason());
                drop(socket);
                continue;
            }
        };
        Counters::bump(&service.counters.served);
        let _ = socket.set_nodelay(true);
        let info = ConnectionInfo {
            id: ctx.rt.next_conn_id(),
            transport: Transport::Tcp,
            role: Role::Accepted,
            peer: peer.to_string(),
            local: local.clone(),
        };
        let plugin = service.current();
        let (reader, writer) = socket.into_split();
        let (ctx2, service) = (ctx.clone(), service.clone());
        let quarantined = service.conduct.quarantined();
        ctx.tracker.spawn(ctx.rt.lanes().run(
            async move {
                let _ticket = ticket;
                let closer = Closer::new();
                let close_on_force = {
                    let closer = closer.clone();
                    async move {
                        ctx2.force.cancelled().await;
                        closer.close("the server is shutting down");
                        std::future::pending::<()>().await
                    }
                };
                let info2 = info.clone();
                tokio::select! {
                    outcome = session::run_stream(&ctx2.rt, &plugin, info, reader, writer, closer) => service.account(&info2, &outcome),
                    () = close_on_force => {}
                }
            },
            quarantined,
        ));
    }
}
