//! [`Room`]: membership of a hub room, for messages between connections.

use crate::worlds::full::switchboard::plugin::hub::{HubError, Member};
use crate::worlds::full::wasi::io::poll::Pollable;

/// Membership of one hub room; leaving is dropping it.
///
/// A message published reaches every *other* member. The host keeps a bounded queue per
/// member; a member that falls too far behind is removed and its connection closed.
///
/// The host's bounds (see `wit/switchboard.wit`): names at most 256 bytes, at most 16
/// rooms joined at once per connection, messages at most 64 KiB, 8 MiB and 1,000
/// messages per second per member; a call past one returns a [`HubError`].
pub struct Room {
    // The pollable is a child of the member: declared (and so dropped) first.
    ready: Pollable,
    member: Member,
}

impl Room {
    /// Joins the room called `name`, creating it if it has no members yet. Panics (the
    /// connection ends with the error logged) where [`try_join`](Self::try_join) fails.
    pub fn join(name: &str) -> Room {
        match Room::try_join(name) {
            Ok(room) => room,
            Err(e) => panic!("cannot join hub room: {}", e.name()),
        }
    }

    /// Joins the room called `name`, or says why not (a name over 256 bytes, 16 rooms
    /// already joined).
    pub fn try_join(name: &str) -> Result<Room, HubError> {
        let member = Member::join(name)?;
        Ok(Room { ready: member.subscribe(), member })
    }

    /// Sends `msg` to every other member, or says why not: longer than 64 KiB, or over the
    /// member's publish budget (the message was not sent).
    pub fn publish(&self, msg: &[u8]) -> Result<(), HubError> {
        self.member.try_publish(msg)
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

    /// Sets this member's display name (initially the connection's peer address), or says
    /// why not (longer than 256 bytes).
    pub fn set_name(&self, name: &str) -> Result<(), HubError> {
        self.member.try_set_name(name)
    }

    /// Display names of the members (at most the 1,000 oldest), oldest first.
    pub fn names(&self) -> Vec<String> {
        self.member.names()
    }

    /// The pollable that is ready when a message is waiting.
    pub fn pollable(&self) -> &Pollable {
        &self.ready
    }
}
