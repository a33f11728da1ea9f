//! Starting a conversation, the same way on every transport: its [`ConnectionInfo`], its
//! task on the lanes (in the heavy lane from the start while its plugin is quarantined),
//! closing it when the drain timeout runs out, and pausing after accept/receive errors.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::guest::bindings::{ConnectionInfo, Role, Transport};
use crate::guest::closer::Closer;
use crate::instance::runtime::Runtime;
use crate::service::Service;
use crate::service::connections::Connection;
use crate::util::backoff::Backoff;

/// Why a conversation is closed when the drain timeout runs out.
pub(crate) const SHUTTING_DOWN: &str = "the server is shutting down";

/// An address as plugins and logs see it: an IPv4 client of a dual-stack (`[::]`)
/// listener is shown as the IPv4 address it is, not `[::ffff:a.b.c.d]`.
pub(crate) fn show(addr: SocketAddr) -> String {
    SocketAddr::new(addr.ip().to_canonical(), addr.port()).to_string()
}

/// The [`ConnectionInfo`] of a conversation accepted (or dialed) now.
pub(crate) fn info(rt: &Runtime, transport: Transport, role: Role, peer: String, local: String) -> ConnectionInfo {
    ConnectionInfo { id: rt.next_conn_id(), transport, role, peer, local }
}

/// Spawns `conversation` on the lanes, tracked for the drain: in the heavy lane from the
/// start while `service`'s plugin is quarantined, else moving there if it spins. Its
/// entry in the connection table, if it has one, follows its lane.
pub(crate) fn spawn<F>(shared: &Shared, service: &Service, entry: Option<&Connection>, conversation: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let laned = shared.rt.lanes().run(conversation, service.quarantine.in_force(), &service.lane_moves);
    if let Some(entry) = entry {
        entry.follow_lane(laned.heavy_flag());
    }
    shared.tracker.spawn(laned)
}

/// Runs `conversation`; when the drain starts (`draining`) tells it through `closer`, and
/// if `close_all` fires (the drain timeout ran out), asks it to close and lets it finish
/// saying goodbye. Without a closer (a datagram) the conversation runs on at the drain
/// and is dropped at the timeout.
///
/// The conversation comes boxed: an `async fn` keeps its arguments' room for as long as
/// it runs, so pinning one taken by value would hold it twice (the argument and the pinned
/// copy) for the whole life of the connection.
pub(crate) async fn closed_at_drain_timeout<F: Future<Output = ()>>(
    (draining, close_all): (CancellationToken, CancellationToken),
    closer: Option<Closer>,
    mut conversation: Pin<Box<F>>,
) {
    tokio::select! {
        () = &mut conversation => return,
        () = draining.cancelled() => {}
        () = close_all.cancelled() => {}
    }
    if let Some(closer) = &closer {
        closer.drain();
    }
    tokio::select! {
        () = &mut conversation => return,
        () = close_all.cancelled() => {}
    }
    if let Some(closer) = closer {
        closer.close(SHUTTING_DOWN);
        conversation.await;
    }
}

/// After a failed accept or receive (EMFILE, ENOBUFS, an ICMP error): logs it and pauses
/// for the next step of `backoff`, so the loop never spins and never stops. `routine`
/// errors (UDP's ICMP reports) are logged at debug level.
pub(crate) async fn pause_after_error(backoff: &mut Backoff, service: &Arc<Service>, what: &str, e: &std::io::Error, routine: bool) {
    let pause = backoff.next_pause();
    if routine {
        tracing::debug!(plugin = %service.name(), "{what} failed: {e}; retrying in {pause:?}");
    } else {
        tracing::warn!(plugin = %service.name(), "{what} failed: {e}; retrying in {pause:?}");
    }
    tokio::time::sleep(pause).await;
}
