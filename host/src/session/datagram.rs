//! One datagram's life: a fresh instance from the pool, `handle-datagram(peer, payload)`,
//! the replies (or why there are none) returned, the instance dropped.
//!
//! Instance policy: **one fresh instance per datagram**, exactly like one per TCP
//! connection. Datagram handlers are stateless by contract, so nothing one peer sends can
//! leak into another peer's answer, and a trap costs only that datagram. With the pooling
//! allocator this costs tens of microseconds per datagram (see the README).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outcome::{CallEnd, Circumstances, Outcome, classify, instantiation_error};
use crate::guest::closer::Closer;
use crate::instance::LimitHit;
use crate::instance::live::{Conversation, Live};
use crate::instance::plugin::Plugin;
use crate::instance::runtime::Runtime;
use crate::util::histogram::Histogram;

/// Longest one datagram may keep its instance (instantiation and call together). A
/// handler still running then is stopped and the datagram gets no answer.
pub const DATAGRAM_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `plugin`'s `handle-datagram(peer, payload)` on a fresh instance; the time it
/// took to make the instance goes into `instantiation`.
///
/// Returns the replies, or the outcome that explains why there are none
/// ([`Outcome::Trap`], [`Outcome::Failed`] or [`Outcome::Limit`]).
pub(crate) async fn handle(
    rt: &Arc<Runtime>,
    plugin: &Arc<Plugin>,
    id: u64,
    peer: SocketAddr,
    payload: Vec<u8>,
    instantiation: &Histogram,
) -> Result<Vec<Vec<u8>>, Outcome> {
    // The plugin's output lines are logged in this span.
    let span = tracing::info_span!("dgram", plugin = %plugin.name, id, %peer);
    let Some(exports) = plugin.datagram_exports() else {
        return Err(Outcome::Failed(format!("{} does not export a datagram handler", plugin.name)));
    };
    let peer = peer.to_string();
    let starting = Instant::now();
    let with = Conversation { peer: peer.clone(), closer: Closer::new(), activity: None, tls: None };
    let mut live = Live::start(rt, plugin, &span, with).await.map_err(|e| Outcome::Failed(e.to_string()))?;
    let cpu = live.cpu();
    let call = cpu.meter(async {
        let store = &mut live.store;
        let instance = plugin.instance_pre().instantiate_async(&mut *store).await.map_err(instantiation_error)?;
        instantiation.observe(starting.elapsed());
        let guest = exports.load(&mut *store, &instance)?;
        guest.call_handle_datagram(&mut *store, &peer, &payload).await
    });
    let (end, timed_out) = match tokio::time::timeout(DATAGRAM_TIMEOUT, call).await {
        Ok(Ok(replies)) => (CallEnd::Returned(replies), false),
        Ok(Err(e)) => (CallEnd::Failed(e), false),
        Err(_) => (CallEnd::Overdue(format!("no answer within {DATAGRAM_TIMEOUT:?}; the instance was stopped")), true),
    };
    let limit = if timed_out { Some(LimitHit::Duration) } else { live.limit_hit() };
    let outcome = classify(end, Circumstances { limit, memory_refused: live.memory_refused(), closed: None });
    live.finish().await;
    outcome
}
