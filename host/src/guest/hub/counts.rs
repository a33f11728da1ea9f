//! What a hub's backplane did since the host started: the host's counters of
//! cross-host traffic and of the connection's ups and downs.

/// What a backplane did since the host started (for the host's counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BackplaneCounts {
    /// Messages handed to the other hosts.
    pub(crate) sent: u64,
    /// Messages from other hosts delivered to a local room.
    pub(crate) received: u64,
    /// Messages not sent because the outbound queue was full (a slow backplane).
    pub(crate) dropped_full: u64,
    /// Messages not sent because the backplane was unreachable.
    pub(crate) dropped_disconnected: u64,
    /// Messages that were on their way when the connection failed.
    pub(crate) lost: u64,
    /// Times the backplane (re)connected.
    pub(crate) connects: u64,
    /// Times the connection was lost.
    pub(crate) disconnects: u64,
}
