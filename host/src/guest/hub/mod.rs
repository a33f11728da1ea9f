//! The in-process hub behind the `hub` interface: named rooms whose members exchange
//! messages (the chat server's broadcast).
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
//! This module is the hub's data and policy; [`host`] implements the WIT interface on a
//! view of one instance's state (wasmtime-wasi-http's types / types_impl split).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use wasmtime_wasi::p2::Pollable;

use super::closer::Closer;
use crate::util::log_limit::LogLimiter;

mod host;
mod limits;

pub(crate) use host::{HubAccess, HubCtx, HubView};
pub use limits::HubLimits;
use limits::PublishBudget;
pub(crate) use limits::Refused;
use limits::{HubCounts, HubStats};

/// All rooms of one host.
#[derive(Clone)]
pub struct Hub {
    rooms: Arc<Mutex<HashMap<String, Weak<Room>>>>,
    next_member: Arc<AtomicU64>,
    limits: HubLimits,
    stats: Arc<HubStats>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(HubLimits::default())
    }
}

impl Hub {
    /// An empty hub with the given limits.
    pub fn new(limits: HubLimits) -> Self {
        Hub { rooms: Arc::default(), next_member: Arc::default(), limits, stats: Arc::default() }
    }

    /// The hub's bounds.
    pub fn limits(&self) -> &HubLimits {
        &self.limits
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
        let room = {
            let mut rooms = self.rooms.lock();
            match rooms.get(room).and_then(Weak::upgrade) {
                Some(existing) => existing,
                None => {
                    let created =
                        Arc::new(Room { name: room.to_string(), rooms: Arc::downgrade(&self.rooms), members: Mutex::new(Vec::new()) });
                    rooms.insert(room.to_string(), Arc::downgrade(&created));
                    created
                }
            }
        };
        let inbox = Arc::new(Inbox { queue: Mutex::new(Queue::default()), notify: Notify::new(), closer });
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        room.members.lock().push(Entry { id, name, inbox: inbox.clone() });
        self.stats.members.fetch_add(1, Ordering::Relaxed);
        let budget = PublishBudget::new(&self.limits);
        Ok(Member { id, room, inbox, limits: self.limits, budget, held: held.clone(), stats: self.stats.clone() })
    }
}

/// A room; lives while it has members.
pub struct Room {
    name: String,
    rooms: Weak<Mutex<HashMap<String, Weak<Room>>>>,
    members: Mutex<Vec<Entry>>,
}

impl Drop for Room {
    fn drop(&mut self) {
        if let Some(rooms) = self.rooms.upgrade() {
            let mut rooms = rooms.lock();
            // A new room of the same name may already have replaced this one.
            if rooms.get(&self.name).is_some_and(|w| w.strong_count() == 0) {
                rooms.remove(&self.name);
            }
        }
    }
}

struct Entry {
    id: u64,
    name: String,
    inbox: Arc<Inbox>,
}

#[derive(Default)]
struct Queue {
    messages: VecDeque<Bytes>,
    bytes: usize,
    evicted: bool,
}

struct Inbox {
    queue: Mutex<Queue>,
    notify: Notify,
    closer: Closer,
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
        self.publish(msg);
        Ok(())
    }

    /// Sends `msg` to every other member; disconnects those whose queue is full.
    fn publish(&self, msg: Bytes) {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        let mut evicted = Vec::new();
        {
            let mut members = self.room.members.lock();
            for entry in members.iter().filter(|e| e.id != self.id) {
                let mut queue = entry.inbox.queue.lock();
                if queue.messages.len() >= self.limits.queue_messages || queue.bytes + msg.len() > self.limits.queue_bytes {
                    queue.evicted = true;
                    queue.messages = VecDeque::new();
                    queue.bytes = 0;
                    evicted.push(entry.id);
                    continue;
                }
                queue.bytes += msg.len();
                queue.messages.push_back(msg.clone());
                drop(queue);
                entry.inbox.notify.notify_one();
            }
            if !evicted.is_empty() {
                let mut gone = Vec::new();
                members.retain(|e| {
                    let keep = !evicted.contains(&e.id);
                    if !keep {
                        gone.push((e.name.clone(), e.inbox.closer.clone()));
                    }
                    keep
                });
                drop(members);
                self.stats.dropped_members.fetch_add(gone.len() as u64, Ordering::Relaxed);
                for (name, closer) in gone {
                    tracing::warn!(room = %self.room.name, member = %name, "hub queue full: disconnecting a member that is not reading");
                    closer.close("hub queue full: the client is not reading");
                }
            }
        }
    }

    /// The next waiting message, if any.
    pub fn try_recv(&self) -> Option<Bytes> {
        let mut queue = self.inbox.queue.lock();
        let msg = queue.messages.pop_front()?;
        queue.bytes -= msg.len();
        Some(msg)
    }

    /// Number of members of the room.
    pub fn count(&self) -> usize {
        self.room.members.lock().len()
    }

    /// Renames this member.
    pub(crate) fn set_name(&self, name: String) -> Result<(), Refused> {
        if name.len() > self.limits.max_name {
            return Err(Refused::NameTooLong);
        }
        if let Some(e) = self.room.members.lock().iter_mut().find(|e| e.id == self.id) {
            e.name = name;
        }
        Ok(())
    }

    /// Names of the oldest members (at most [`HubLimits::max_names`]), oldest first.
    pub fn names(&self) -> Vec<String> {
        self.room.members.lock().iter().take(self.limits.max_names).map(|e| e.name.clone()).collect()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.room.members.lock().retain(|e| e.id != self.id);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(queue_messages: usize) -> Hub {
        Hub::new(HubLimits { queue_messages, ..HubLimits::default() })
    }

    /// Joins as its own instance.
    fn join(hub: &Hub, room: &str, name: &str, closer: Closer) -> Member {
        hub.join(room, name.into(), closer, &Arc::default()).unwrap()
    }

    #[test]
    fn publish_reaches_every_other_member_once() {
        let hub = hub(16);
        let mut a = join(&hub, "r", "a", Closer::new());
        let b = join(&hub, "r", "b", Closer::new());
        let c = join(&hub, "r", "c", Closer::new());
        a.try_publish(&b"hi"[..]).unwrap();
        assert_eq!(a.try_recv(), None);
        assert_eq!(b.try_recv().as_deref(), Some(&b"hi"[..]));
        assert_eq!(c.try_recv().as_deref(), Some(&b"hi"[..]));
        assert_eq!(b.try_recv(), None);
        assert_eq!(a.names(), ["a", "b", "c"]);
    }

    #[test]
    fn rooms_are_separate_and_freed_with_their_last_member() {
        let hub = hub(16);
        let mut a = join(&hub, "one", "a", Closer::new());
        let b = join(&hub, "two", "b", Closer::new());
        a.try_publish(&b"x"[..]).unwrap();
        assert_eq!(b.try_recv(), None);
        assert_eq!(hub.room_count(), 2);
        drop(a);
        assert_eq!(hub.room_count(), 1);
        assert_eq!(b.count(), 1);
        drop(b);
        assert_eq!(hub.room_count(), 0);
        assert!(hub.rooms.lock().is_empty());
    }

    #[test]
    fn a_member_that_falls_behind_is_disconnected_not_the_others() {
        let hub = hub(3);
        let mut talker = join(&hub, "r", "talker", Closer::new());
        let slow_closer = Closer::new();
        let slow = join(&hub, "r", "slow", slow_closer.clone());
        let fast = join(&hub, "r", "fast", Closer::new());
        for i in 0..10u8 {
            talker.try_publish(vec![i]).unwrap();
            assert_eq!(fast.try_recv().as_deref(), Some(&[i][..]));
        }
        assert!(slow_closer.is_closed());
        assert_eq!(slow.try_recv(), None, "an evicted member's queue is freed");
        assert_eq!(talker.names(), ["talker", "fast"]);
        let counts = hub.counts();
        assert_eq!((counts.rooms, counts.members, counts.messages, counts.dropped_members), (1, 3, 10, 1));
        drop((talker, slow, fast));
        assert_eq!((hub.counts().rooms, hub.counts().members), (0, 0), "members are counted until their resource goes");
    }

    #[test]
    fn names_memberships_and_messages_are_bounded() {
        let hub = hub(16);
        let held = Arc::default();
        assert_eq!(hub.join(&"r".repeat(257), "a".into(), Closer::new(), &held).err(), Some(Refused::NameTooLong));
        let members: Vec<_> = (0..16).map(|i| hub.join(&format!("room{i}"), "a".into(), Closer::new(), &held).unwrap()).collect();
        assert_eq!(hub.join("one more", "a".into(), Closer::new(), &held).err(), Some(Refused::TooManyMembers));
        drop(members);
        let mut m = hub.join("r", "a".into(), Closer::new(), &held).expect("dropped memberships are given back");
        assert_eq!(m.set_name("n".repeat(257)), Err(Refused::NameTooLong));
        assert_eq!(m.set_name("n".repeat(256)), Ok(()));
        assert_eq!(m.try_publish(vec![0; 64 * 1024 + 1]), Err(Refused::MessageTooLarge));
        assert_eq!(m.try_publish(vec![0; 64 * 1024]), Ok(()));
    }

    #[test]
    fn a_member_that_publishes_flat_out_runs_out_of_budget() {
        let hub = hub(16);
        let mut m = join(&hub, "r", "a", Closer::new());
        let sent = (0..5000).take_while(|_| m.try_publish(&b"x"[..]).is_ok()).count();
        // 1,000 messages per second, bursts of 2 s: about 2,000 before the budget runs out.
        assert!((2000..2100).contains(&sent), "{sent}");
        assert_eq!(m.try_publish(&b"x"[..]), Err(Refused::OverBudget));
    }

    #[test]
    fn names_lists_the_oldest_members_only() {
        let hub = Hub::new(HubLimits { max_names: 3, ..HubLimits::default() });
        let members: Vec<_> = ["a", "b", "c", "d"].iter().map(|n| join(&hub, "r", n, Closer::new())).collect();
        assert_eq!(members[3].names(), ["a", "b", "c"]);
        assert_eq!(members[0].count(), 4);
    }
}
