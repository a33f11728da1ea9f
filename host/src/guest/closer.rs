//! [`Closer`]: a host-side request to end one connection gracefully.
//!
//! Closing makes the connection's input stream read as ended and its output stream
//! refuse writes, so the plugin notices, says goodbye (e.g. chat's `Client left`) and
//! returns. The session gives it a grace period before dropping the instance.
//!
//! Draining is gentler: the input stream ends once the peer has nothing more in flight,
//! with an error whose text starts with [`DRAINING`], while the output stream stays
//! open, so the plugin can say goodbye (chat: `* the server is shutting down`) and
//! return; the host's drain ends as soon as every conversation has.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// How a drained input stream's read fails: the text of its `error`. The SDKs treat it
/// like a reset (the plugin returns quietly); a plugin that wants to say goodbye looks
/// for this prefix.
pub const DRAINING: &str = "draining: the server is shutting down";

/// Shared by a session, its streams and its hub memberships.
#[derive(Clone, Default)]
pub struct Closer {
    token: CancellationToken,
    drain: CancellationToken,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Mirrors the token: the streams ask at every read and write, and the token's own
    /// check takes a lock.
    closed: AtomicBool,
    /// Mirrors the drain token, for the same reason.
    draining: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Closer {
    /// A closer that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for the connection to end; the first reason given is kept.
    pub fn close(&self, reason: impl Into<String>) {
        let mut slot = self.shared.reason.lock();
        if slot.is_none() {
            *slot = Some(reason.into());
        }
        drop(slot);
        self.shared.closed.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether [`Closer::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Resolves once [`Closer::close`] has been called (cancel-safe).
    pub async fn closed(&self) {
        self.token.cancelled().await
    }

    /// Tells the conversation the host is draining (see the module docs).
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::Release);
        self.drain.cancel();
    }

    /// Whether [`Closer::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Resolves once [`Closer::drain`] has been called (cancel-safe).
    pub async fn draining(&self) {
        self.drain.cancelled().await
    }

    /// Why the connection was closed by the host, if it was.
    pub fn reason(&self) -> Option<String> {
        self.shared.reason.lock().clone()
    }
}
