//! One room: its local members with their queues, and what the backplane last said about
//! its members on other hosts. Delivery (local publishes and messages from other hosts)
//! and presence (`count`, `names`) are here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::limits::{HubLimits, HubStats};
use crate::guest::closer::Closer;

/// The rooms of one host by name; a room is in the map while it has members.
pub(crate) type Rooms = Mutex<HashMap<String, Weak<Room>>>;

/// A room; lives while it has local members.
pub struct Room {
    pub(super) name: String,
    rooms: Weak<Rooms>,
    pub(super) members: Mutex<Vec<Entry>>,
    /// The room's members on other hosts (empty without a backplane).
    remote: Mutex<Remote>,
    pub(super) limits: HubLimits,
    /// Woken when the room's local members change (a backplane tells other hosts).
    changed: Arc<Notify>,
    /// The hub's counts (dropped members are counted here, whoever published).
    stats: Arc<HubStats>,
}

/// A room's members on other hosts, as the backplane last read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Remote {
    /// How many there are.
    pub(crate) count: usize,
    /// `(joined, name)` of the oldest ones (at most [`HubLimits::max_names`]), oldest
    /// first; `joined` is microseconds since the Unix epoch on the member's host.
    pub(crate) names: Vec<(u64, String)>,
}

pub(super) struct Entry {
    pub(super) id: u64,
    pub(super) name: String,
    /// Microseconds since the Unix epoch when it joined (orders names across hosts).
    pub(super) joined: u64,
    pub(super) inbox: Arc<Inbox>,
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) messages: VecDeque<Bytes>,
    pub(super) bytes: usize,
    pub(super) evicted: bool,
}

pub(super) struct Inbox {
    pub(super) queue: Mutex<Queue>,
    pub(super) notify: Notify,
    pub(super) closer: Closer,
}

impl Room {
    /// The room `name` in `rooms`, or a new one registered there.
    pub(super) fn get_or_create(
        rooms: &Arc<Rooms>,
        name: &str,
        limits: HubLimits,
        changed: &Arc<Notify>,
        stats: &Arc<HubStats>,
    ) -> Arc<Room> {
        let mut map = rooms.lock();
        if let Some(existing) = map.get(name).and_then(Weak::upgrade) {
            return existing;
        }
        let created = Arc::new(Room {
            name: name.to_string(),
            rooms: Arc::downgrade(rooms),
            members: Mutex::new(Vec::new()),
            remote: Mutex::default(),
            limits,
            changed: changed.clone(),
            stats: stats.clone(),
        });
        map.insert(name.to_string(), Arc::downgrade(&created));
        created
    }

    /// The live rooms of `rooms`.
    pub(crate) fn live(rooms: &Rooms) -> Vec<Arc<Room>> {
        rooms.lock().values().filter_map(Weak::upgrade).collect()
    }

    /// The live room `name` of `rooms`, if it has members here.
    pub(crate) fn find(rooms: &Rooms, name: &str) -> Option<Arc<Room>> {
        rooms.lock().get(name).and_then(Weak::upgrade)
    }

    /// The room's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Queues `msg` for every local member but `except` (and, for a message published on
    /// another host at `published`, but those who joined after it); disconnects those
    /// whose queue is full. Never waits.
    pub(crate) fn deliver(&self, msg: &Bytes, except: Option<u64>, published: Option<u64>) {
        let limits = &self.limits;
        let mut evicted = Vec::new();
        let mut members = self.members.lock();
        let due = |e: &&Entry| Some(e.id) != except && published.is_none_or(|at| e.joined <= at);
        for entry in members.iter().filter(due) {
            let mut queue = entry.inbox.queue.lock();
            if queue.messages.len() >= limits.queue_messages || queue.bytes + msg.len() > limits.queue_bytes {
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
        if evicted.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        members.retain(|e| {
            let keep = !evicted.contains(&e.id);
            if !keep {
                gone.push((e.name.clone(), e.inbox.closer.clone()));
            }
            keep
        });
        drop(members);
        self.changed();
        self.stats.dropped_members.fetch_add(gone.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for (name, closer) in gone {
            tracing::warn!(room = %self.name, member = %name, "hub queue full: disconnecting a member that is not reading");
            closer.close("hub queue full: the client is not reading");
        }
    }

    /// Says that the room's local members changed (joined, left, renamed).
    pub(super) fn changed(&self) {
        self.changed.notify_one();
    }

    /// Members on every host.
    pub(super) fn count(&self) -> usize {
        self.members.lock().len() + self.remote.lock().count
    }

    /// Names of the oldest members on every host (at most [`HubLimits::max_names`]),
    /// oldest first.
    pub(super) fn names(&self) -> Vec<String> {
        let max = self.limits.max_names;
        let remote = self.remote.lock();
        let members = self.members.lock();
        if remote.names.is_empty() {
            // In-process: the order members joined in, as it always was.
            return members.iter().take(max).map(|e| e.name.clone()).collect();
        }
        let mut all: Vec<(u64, &str)> = members.iter().take(max).map(|e| (e.joined, e.name.as_str())).collect();
        all.extend(remote.names.iter().map(|(joined, name)| (*joined, name.as_str())));
        // The same order on every host: by join time, then name.
        all.sort_unstable();
        all.into_iter().take(max).map(|(_, name)| name.to_string()).collect()
    }

    /// This host's members: how many, and `(joined, name)` of the oldest
    /// [`HubLimits::max_names`], oldest first.
    pub(crate) fn local_presence(&self) -> (usize, Vec<(u64, String)>) {
        let members = self.members.lock();
        (members.len(), members.iter().take(self.limits.max_names).map(|e| (e.joined, e.name.clone())).collect())
    }

    /// Replaces what is known about the room's members on other hosts.
    pub(crate) fn set_remote(&self, remote: Remote) {
        *self.remote.lock() = remote;
    }
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
        self.changed();
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
