//! The seam between the hub and what carries rooms across hosts. The hub calls
//! [`Backplane::publish`] (a local member's message, after its local delivery; never
//! waits) and [`Backplane::counts`], and wakes the `changed` notify it started the
//! backplane with when a room's local members change (join, leave, rename). A backplane
//! reads the rooms ([`Room::local_presence`](super::room::Room::local_presence)) and calls back into them
//! ([`Room::deliver`](super::room::Room::deliver) for a message from another host,
//! [`Room::set_remote`](super::room::Room::set_remote) for the other hosts' members).
//! Another engine (NATS, say) is one more variant here; plugins never see which is used.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::Notify;

use super::counts::BackplaneCounts;
use super::limits::HubLimits;
use super::redis::{RedisBackplane, RedisStartError};
use super::room::Rooms;
use crate::config::HubBackend;

/// What carries a hub's rooms to other hosts.
#[derive(Clone, Default)]
pub(crate) enum Backplane {
    /// Nothing: rooms are this process's own.
    #[default]
    InProcess,
    /// Redis pub/sub for messages, Redis keys with an expiry for presence.
    Redis(Arc<RedisBackplane>),
}

/// Why a backplane cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    /// The Redis backplane cannot start.
    #[error(transparent)]
    Redis(#[from] RedisStartError),
}

impl Backplane {
    /// Starts the backplane `backend` asks for, serving `rooms`; `changed` is woken when
    /// their local members change.
    pub(super) fn start(
        backend: &HubBackend,
        rooms: Weak<Rooms>,
        limits: HubLimits,
        changed: Arc<Notify>,
    ) -> Result<Backplane, BackplaneError> {
        match backend {
            HubBackend::InProcess => Ok(Backplane::InProcess),
            HubBackend::Redis(redis) => Ok(Backplane::Redis(RedisBackplane::start(redis, rooms, limits, changed)?)),
        }
    }

    /// Sends a local member's message to the room's members on other hosts.
    pub(super) fn publish(&self, room: &str, member: u64, msg: &Bytes) {
        match self {
            Backplane::InProcess => {}
            Backplane::Redis(redis) => redis.publish(room, member, msg),
        }
    }

    /// What it did since the start; `None` in-process.
    pub(super) fn counts(&self) -> Option<BackplaneCounts> {
        match self {
            Backplane::InProcess => None,
            Backplane::Redis(redis) => Some(redis.counts()),
        }
    }
}
