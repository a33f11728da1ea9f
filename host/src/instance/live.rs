//! [`Live`]: one instance's Store and its pool slot, from the moment a connection (or a
//! datagram) gets one to the moment it is dropped.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

use super::cpu::CpuMeter;
use super::limits::LimitHit;
use super::plugin::Plugin;
use super::runtime::Runtime;
use super::store::{State, StoreSpec, new_store};
use crate::guest::bindings::TlsSession;
use crate::guest::closer::Closer;
use crate::guest::hub::HubCtx;
use crate::guest::traffic::Activity;

/// An instance whose memory grew past this is dropped on the blocking pool: returning
/// tens of MiB to the kernel takes milliseconds no epoch tick can interrupt.
const BIG_INSTANCE: usize = 8 << 20;

/// Who an instance talks to: what its hub memberships and traffic clock need.
pub(crate) struct Conversation {
    /// The peer's address (a hub member's first display name).
    pub(crate) peer: String,
    /// Ends the conversation gracefully (a hub membership that falls behind uses it).
    pub(crate) closer: Closer,
    /// The traffic clock, for a connection (datagrams have none).
    pub(crate) activity: Option<Arc<Activity>>,
    /// The TLS session the connection arrived over, if it did.
    pub(crate) tls: Option<TlsSession>,
}

/// A Store for one plugin instance, holding its pool slot until [`Live::finish`].
pub(crate) struct Live {
    /// The Store.
    pub(crate) store: Store<State>,
    _slot: OwnedSemaphorePermit,
}

impl Live {
    /// Waits for a pool slot, then makes a Store for `plugin` talking to `with`, whose
    /// output lines are logged in `span`.
    pub(crate) async fn start(rt: &Runtime, plugin: &Plugin, span: &tracing::Span, with: Conversation) -> std::io::Result<Live> {
        let slot = rt.instance_slot().await;
        let spec = StoreSpec {
            grants: &plugin.grants,
            limits: &plugin.limits,
            pool_memory: rt.memory_limit(),
            output: &plugin.output,
            span,
            hub: Some(HubCtx {
                hub: rt.hub().clone(),
                name: with.peer,
                closer: with.closer,
                held: Default::default(),
                span: span.clone(),
                log: plugin.output.clone(),
            }),
            activity: with.activity,
            tls: with.tls,
        };
        Ok(Live { store: new_store(rt.engine(), spec)?, _slot: slot })
    }

    /// The instance's CPU meter.
    pub(crate) fn cpu(&self) -> Arc<CpuMeter> {
        self.store.data().cpu.clone()
    }

    /// The limit the instance ran into (CPU), if any.
    pub(crate) fn limit_hit(&self) -> Option<LimitHit> {
        self.store.data().limit_hit
    }

    /// Whether a memory growth was refused.
    pub(crate) fn memory_refused(&self) -> bool {
        self.store.data().memory.hit
    }

    /// Drops the instance (and its streams) and gives the slot back, without stalling the
    /// async worker when its memory grew big.
    pub(crate) async fn finish(self) {
        let Live { store, _slot } = self;
        if store.data().memory.peak > BIG_INSTANCE {
            let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        } else {
            drop(store);
        }
    }
}
