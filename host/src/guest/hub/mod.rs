//! The in-process hub behind the `hub` interface: named rooms whose members exchange
//! messages (the chat server's broadcast).
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use wasmtime_wasi::p2::Pollable;

use super::closer::Closer;

mod host;

pub(crate) use host::{HubAccess, HubCtx, HubView};

/// Bounds on what the hub holds for one member.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Largest message `publish` accepts; a larger one traps the publisher.
    pub max_message: usize,
    /// Most messages waiting for one member before it is disconnected.
    pub queue_messages: usize,
    /// Most bytes waiting for one member before it is disconnected.
    pub queue_bytes: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits { max_message: 64 * 1024, queue_messages: 4096, queue_bytes: 1024 * 1024 }
    }
}

/// All rooms of one host.
#[derive(Clone, Default)]
pub struct Hub {
    rooms: Arc<Mutex<HashMap<String, Weak<Room>>>>,
    next_member: Arc<AtomicU64>,
    limits: HubLimits,
}

impl Hub {
    /// An empty hub with the given limits.
    pub fn new(limits: HubLimits) -> Self {
        Hub { limits, ..Default::default() }
    }

    /// Number of rooms that currently have members.
    #[cfg(test)]
    pub fn room_count(&self) -> usize {
        self.rooms.lock().values().filter(|r| r.strong_count() > 0).count()
    }

    /// Joins `room` as `name`; `closer` ends the member's connection if it falls behind.
    pub fn join(&self, room: &str, name: String, closer: Closer) -> Member {
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
        Member { id, room, inbox, limits: self.limits }
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

/// One membership: the host side of a guest's `hub.member` resource.
pub struct Member {
    id: u64,
    room: Arc<Room>,
    inbox: Arc<Inbox>,
    limits: HubLimits,
}

impl Member {
    /// Sends `msg` to every other member; disconnects those whose queue is full.
    pub fn publish(&self, msg: Bytes) {
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
    pub fn set_name(&self, name: String) {
        if let Some(e) = self.room.members.lock().iter_mut().find(|e| e.id == self.id) {
            e.name = name;
        }
    }

    /// Names of all members, oldest first.
    pub fn names(&self) -> Vec<String> {
        self.room.members.lock().iter().map(|e| e.name.clone()).collect()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.room.members.lock().retain(|e| e.id != self.id);
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

    #[test]
    fn publish_reaches_every_other_member_once() {
        let hub = hub(16);
        let a = hub.join("r", "a".into(), Closer::new());
        let b = hub.join("r", "b".into(), Closer::new());
        let c = hub.join("r", "c".into(), Closer::new());
        a.publish(Bytes::from_static(b"hi"));
        assert_eq!(a.try_recv(), None);
        assert_eq!(b.try_recv().as_deref(), Some(&b"hi"[..]));
        assert_eq!(c.try_recv().as_deref(), Some(&b"hi"[..]));
        assert_eq!(b.try_recv(), None);
        assert_eq!(a.names(), ["a", "b", "c"]);
    }

    #[test]
    fn rooms_are_separate_and_freed_with_their_last_member() {
        let hub = hub(16);
        let a = hub.join("one", "a".into(), Closer::new());
        let b = hub.join("two", "b".into(), Closer::new());
        a.publish(Bytes::from_static(b"x"));
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
        let talker = hub.join("r", "talker".into(), Closer::new());
        let slow_closer = Closer::new();
        let slow = hub.join("r", "slow".into(), slow_closer.clone());
        let fast = hub.join("r", "fast".into(), Closer::new());
        for i in 0..10u8 {
            talker.publish(Bytes::from(vec![i]));
            assert_eq!(fast.try_recv().as_deref(), Some(&[i][..]));
        }
        assert!(slow_closer.is_closed());
        assert_eq!(slow.try_recv(), None, "an evicted member's queue is freed");
        assert_eq!(talker.names(), ["talker", "fast"]);
    }
}
