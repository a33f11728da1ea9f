//! The hub behind the `hub` interface: named rooms whose members exchange messages (the
//! chat server's broadcast), in-process by default, spread over several hosts by a
//! [`backplane`] (Redis) when `--hub redis://…` is given.
//!
//! Bounds ([`limits`]): names, memberships per instance, message size, a publish budget
//! per member and `names()` are bounded, so what the host holds for a plugin's hub state
//! is small and fixed per member: its name (at most 256 bytes), some 200 bytes of
//! bookkeeping, and its queue.
//!
//! Policy for slow members: every member has a bounded queue ([`HubLimits`]). A publish
//! never waits; when a member's queue is full, that member is *disconnected*: it leaves
//! the room at once (its queue is freed) and its connection is closed by the host. The
//! other members are never slowed down, and host memory stays bounded by
//! `members × queue_bytes`. Members leave when their resource is dropped (or their
//! connection's instance goes away); a room is freed with its last member.
//!
//! Across hosts: a member's publish is delivered to the room's local members at once and
//! handed to the backplane, which delivers it to the room's members on the other hosts;
//! `count` and `names` add what the backplane last said about the other hosts (a cache,
//! so these calls never wait on the network). No plugin sees the difference.
//!
//! [`room`] holds a room's data and delivery; [`host`] implements the WIT interface on a
//! view of one instance's state (wasmtime-wasi-http's types / types_impl split).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use wasmtime_wasi::p2::Pollable;

use super::closer::Closer;
use crate::config::HubBackend;
use crate::util::log_limit::LogLimiter;

mod backplane;
mod counts;
mod host;
mod limits;
mod redis;
mod room;
#[cfg(test)]
mod tests;

pub(crate) use backplane::Backplane;
pub use backplane::BackplaneError;
pub(crate) use counts::BackplaneCounts;
pub(crate) use host::{HubAccess, HubCtx, HubView};
pub use limits::HubLimits;
use limits::PublishBudget;
pub(crate) use limits::Refused;
use limits::{HubCounts, HubStats};
use room::{Entry, Inbox, Queue, Room, Rooms, unix_micros};

/// All rooms of one host.
#[derive(Clone)]
pub struct Hub {
    rooms: Arc<Rooms>,
    next_member: Arc<AtomicU64>,
    limits: HubLimits,
    stats: Arc<HubStats>,
    /// Woken when any room's local members change.
    changed: Arc<Notify>,
    backplane: Backplane,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backplane = match self.backplane {
            Backplane::InProcess => "in-process",
            Backplane::Redis(_) => "redis",
        };
        f.debug_struct("Hub").field("limits", &self.limits).field("backplane", &backplane).finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(HubLimits::default())
    }
}

impl Hub {
    /// An empty in-process hub with the given limits.
    pub fn new(limits: HubLimits) -> Self {
        Hub {
            rooms: Arc::default(),
            next_member: Arc::default(),
            limits,
            stats: Arc::default(),
            changed: Arc::new(Notify::new()),
            backplane: Backplane::InProcess,
        }
    }

    /// An empty hub on `backend`; a backplane's connection is made in the background
    /// (call from within the tokio runtime).
    pub fn start(limits: HubLimits, backend: &HubBackend) -> Result<Self, BackplaneError> {
        let mut hub = Hub::new(limits);
        hub.backplane = Backplane::start(backend, Arc::downgrade(&hub.rooms), limits, hub.changed.clone())?;
        Ok(hub)
    }

    /// The hub's bounds.
    pub fn limits(&self) -> &HubLimits {
        &self.limits
    }

    /// What the backplane did since the start (`None` in-process).
    pub(crate) fn backplane_counts(&self) -> Option<BackplaneCounts> {
        self.backplane.counts()
    }

    /// Counts a refused call and logs it in `span`, within the plugin's allowance `log`.
    pub(crate) fn refused(&self, why: Refused, room: &str, span: &tracing::Span, log: &LogLimiter) {
        let total = match why {
            Refused::OverBudget => &self.stats.over_budget,
            _ => &self.stats.refused,
        };
        let total = total.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(suppressed) = log.allow() {
            let room: String = room.chars().take(64).collect();
            tracing::warn!(parent: span, %room, hub_total = total, suppressed, "hub refused a call: {}", why.trap_message(&self.limits));
        }
    }

    /// Number of rooms that currently have members.
    pub fn room_count(&self) -> usize {
        self.rooms.lock().values().filter(|r| r.strong_count() > 0).count()
    }

    /// What the hub holds now and has done since the host started.
    pub(crate) fn counts(&self) -> HubCounts {
        self.stats.counts(self.room_count() as u64)
    }

    /// Joins `room` as `name`; `closer` ends the member's connection if it falls behind;
    /// `held` counts the memberships of the joining instance.
    pub(crate) fn join(&self, room: &str, name: String, closer: Closer, held: &Arc<AtomicUsize>) -> Result<Member, Refused> {
        if room.len() > self.limits.max_name {
            return Err(Refused::NameTooLong);
        }
        let taken = held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.limits.members_per_instance).then_some(n + 1));
        if taken.is_err() {
            return Err(Refused::TooManyMembers);
        }
        let name = truncated(name, self.limits.max_name);
        let room = Room::get_or_create(&self.rooms, room, self.limits, &self.changed, &self.stats);
        let inbox = Arc::new(Inbox { queue: Mutex::new(Queue::default()), notify: Notify::new(), closer });
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        room.members.lock().push(Entry { id, name, joined: unix_micros(), inbox: inbox.clone() });
        room.changed();
        self.stats.members.fetch_add(1, Ordering::Relaxed);
        let budget = PublishBudget::new(&self.limits);
        let (backplane, stats) = (self.backplane.clone(), self.stats.clone());
        Ok(Member { id, room, inbox, limits: self.limits, budget, held: held.clone(), backplane, stats })
    }
}

/// `name` cut to at most `max` bytes, at a character boundary.
fn truncated(mut name: String, max: usize) -> String {
    if name.len() > max {
        let mut end = max;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// One membership: the host side of a guest's `hub.member` resource.
pub struct Member {
    id: u64,
    room: Arc<Room>,
    inbox: Arc<Inbox>,
    limits: HubLimits,
    budget: PublishBudget,
    /// The memberships its instance holds, this one included.
    held: Arc<AtomicUsize>,
    /// Where its messages go beyond this host.
    backplane: Backplane,
    /// The hub's counts.
    stats: Arc<HubStats>,
}

impl Member {
    /// The room's name.
    pub fn room(&self) -> &str {
        &self.room.name
    }

    /// Sends `msg` to every other member if it is within the size limit and the member's
    /// publish budget.
    pub(crate) fn try_publish(&mut self, msg: impl Into<Bytes>) -> Result<(), Refused> {
        let msg = msg.into();
        if msg.len() > self.limits.max_message {
            return Err(Refused::MessageTooLarge);
        }
        if !self.budget.take(msg.len(), &self.limits) {
            return Err(Refused::OverBudget);
        }
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        // Here first, then the other hosts: neither waits.
        self.room.deliver(&msg, Some(self.id), None);
        self.backplane.publish(&self.room.name, self.id, &msg);
        Ok(())
    }

    /// The next waiting message, if any.
    pub fn try_recv(&self) -> Option<Bytes> {
        let mut queue = self.inbox.queue.lock();
        let msg = queue.messages.pop_front()?;
        queue.bytes -= msg.len();
        Some(msg)
    }

    /// Number of members of the room, on every host.
    pub fn count(&self) -> usize {
        self.room.count()
    }

    /// Renames this member.
    pub(crate) fn set_name(&self, name: String) -> Result<(), Refused> {
        if name.len() > self.limits.max_name {
            return Err(Refused::NameTooLong);
        }
        if let Some(e) = self.room.members.lock().iter_mut().find(|e| e.id == self.id) {
            e.name = name;
        }
        self.room.changed();
        Ok(())
    }

    /// Names of the oldest members (at most [`HubLimits::max_names`]) on every host,
    /// oldest first.
    pub fn names(&self) -> Vec<String> {
        self.room.names()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.room.members.lock().retain(|e| e.id != self.id);
        self.room.changed();
        self.held.fetch_sub(1, Ordering::Relaxed);
        self.stats.members.fetch_sub(1, Ordering::Relaxed);
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Member {
    async fn ready(&mut self) {
        loop {
            let (waiting, evicted) = {
                let queue = self.inbox.queue.lock();
                (!queue.messages.is_empty(), queue.evicted)
            };
            if waiting {
                return;
            }
            if evicted {
                // Never ready again: the host is closing this connection. Returning here
                // would make the guest spin.
                return std::future::pending().await;
            }
            self.inbox.notify.notified().await;
        }
    }
}
