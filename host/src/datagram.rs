//! One datagram's life: a fresh instance from the pool, `handle-datagram(peer, payload)`,
//! the replies (or why there are none) returned, the `Store` dropped.
//!
//! Instance policy: **one fresh instance per datagram**, exactly like one per TCP
//! connection. Datagram handlers are stateless by contract, so nothing one peer sends can
//! leak into another peer's answer, and a trap costs only that datagram. With the pooling
//! allocator this costs tens of microseconds per datagram (see the README).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::closer::Closer;
use crate::limits::LimitHit;
use crate::plugin::Plugin;
use crate::runtime::Runtime;
use crate::session::Outcome;

/// Longest one datagram may keep its instance (instantiation and call together). A
/// handler still running then is stopped and the datagram gets no answer.
pub const DATAGRAM_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `plugin`'s `handle-datagram(peer, payload)` on a fresh instance.
///
/// Returns the replies, or the outcome that explains why there are none
/// ([`Outcome::Trap`], [`Outcome::Failed`] or [`Outcome::Limit`]).
pub async fn handle(rt: &Arc<Runtime>, plugin: &Arc<Plugin>, id: u64, peer: SocketAddr, payload: Vec<u8>) -> Result<Vec<Vec<u8>>, Outcome> {
    // The plugin's output lines are logged in this span.
    let span = tracing::info_span!("dgram", plugin = %plugin.name, id, %peer);
    call(rt, plugin, peer, payload, span).await
}

async fn call(
    rt: &Arc<Runtime>,
    plugin: &Arc<Plugin>,
    peer: SocketAddr,
    payload: Vec<u8>,
    span: tracing::Span,
) -> Result<Vec<Vec<u8>>, Outcome> {
    let Some(exports) = plugin.datagram_exports() else {
        return Err(Outcome::Failed(format!("{} does not export a datagram handler", plugin.name)));
    };
    let _slot = rt.instance_slot().await;
    let peer = peer.to_string();
    let mut store = rt
        .new_store(&plugin.grants, &plugin.limits, &plugin.output, &span, peer.clone(), Closer::new())
        .map_err(|e| Outcome::Failed(e.to_string()))?;
    let cpu = store.data().cpu.clone();
    let run = cpu.meter(async {
        let instance = plugin.instance_pre().instantiate_async(&mut store).await?;
        let guest = exports.load(&mut store, &instance)?;
        guest.call_handle_datagram(&mut store, &peer, &payload).await
    });
    let result = tokio::time::timeout(DATAGRAM_TIMEOUT, run).await;
    let limit = store.data().limit_hit.or(store.data().memory.hit.then_some(LimitHit::Memory));
    let outcome = match result {
        Ok(Ok(replies)) => Ok(replies),
        Ok(Err(e)) => Err(match limit {
            Some(hit) => Outcome::Limit(hit, format!("{e:#}")),
            None => Outcome::Trap(format!("{e:?}")),
        }),
        Err(_) => Err(Outcome::Limit(LimitHit::Duration, format!("no answer within {DATAGRAM_TIMEOUT:?}; the instance was stopped"))),
    };
    let peak = store.data().memory.peak;
    crate::limits::drop_store(store, peak).await;
    outcome
}
