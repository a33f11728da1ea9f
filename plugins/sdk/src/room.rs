//! [`Room`]: membership of a hub room, for messages between connections.

use crate::worlds::full::switchboard::plugin::hub::Member;
use crate::worlds::full::wasi::io::poll::Pollable;

/// Membership of one hub room; leaving is dropping it.
///
/// A message published reaches every *other* member. The host keeps a bounded queue per
/// member; a member that falls too far behind is removed and its connection closed.
pub struct Room {
    // The pollable is a child of the member: declared (and so dropped) first.
    ready: Pollable,
    member: Member,
}

impl Room {
    /// Joins the room called `name`, creating it if it has no members yet.
    pub fn join(name: &str) -> Room {
        let member = Member::new(name);
        Room { ready: member.subscribe(), member }
    }

    /// Sends `msg` to every other member (at most 64 KiB; longer traps).
    pub fn publish(&self, msg: &[u8]) {
        self.member.publish(msg)
    }

    /// The next waiting message, if any (never blocks).
    pub fn try_recv(&self) -> Option<Vec<u8>> {
        self.member.try_recv()
    }

    /// Blocks until a message is waiting, then returns it.
    pub fn recv(&self) -> Vec<u8> {
        loop {
            if let Some(msg) = self.member.try_recv() {
                return msg;
            }
            self.ready.block();
        }
    }

    /// Number of members, this one included.
    pub fn count(&self) -> u32 {
        self.member.count()
    }

    /// Sets this member's display name (initially the connection's peer address).
    pub fn set_name(&self, name: &str) {
        self.member.set_name(name)
    }

    /// Display names of all members, oldest first.
    pub fn names(&self) -> Vec<String> {
        self.member.names()
    }

    /// The pollable that is ready when a message is waiting.
    pub fn pollable(&self) -> &Pollable {
        &self.ready
    }
}
