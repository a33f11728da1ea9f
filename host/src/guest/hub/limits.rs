//! The hub's bounds ([`HubLimits`]): what one member may have queued and may publish, and
//! what one instance may hold, so the host memory a plugin's hub state takes is small and
//! fixed per member; [`Refused`] says which bound a call ran into.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::util::clock::coarse_clock;

/// Bounds on what the hub holds and does for one member and one instance.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Largest message `publish` accepts.
    pub max_message: usize,
    /// Most messages waiting for one member before it is disconnected.
    pub queue_messages: usize,
    /// Most bytes waiting for one member before it is disconnected.
    pub queue_bytes: usize,
    /// Longest room or display name, in bytes.
    pub max_name: usize,
    /// Most memberships one instance holds at once.
    pub members_per_instance: usize,
    /// Most names `names()` returns (the oldest members).
    pub max_names: usize,
    /// Bytes one member may publish per second, on average.
    pub publish_bytes_per_second: u64,
    /// Messages one member may publish per second, on average.
    pub publish_messages_per_second: u64,
    /// How many seconds' worth of the publish budget may be spent in one burst.
    pub publish_burst: Duration,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            max_message: 64 * 1024,
            queue_messages: 4096,
            queue_bytes: 1024 * 1024,
            max_name: 256,
            members_per_instance: 16,
            max_names: 1000,
            publish_bytes_per_second: 8 << 20,
            publish_messages_per_second: 1000,
            publish_burst: Duration::from_secs(2),
        }
    }
}

/// Which bound a hub call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A room or display name is longer than [`HubLimits::max_name`].
    NameTooLong,
    /// A message is longer than [`HubLimits::max_message`].
    MessageTooLarge,
    /// The instance already holds [`HubLimits::members_per_instance`] memberships.
    TooManyMembers,
    /// The member spent its publish budget.
    OverBudget,
}

impl Refused {
    /// What the guest is told when the call traps instead (the 0.1.0 calls).
    pub(crate) fn trap_message(self, limits: &HubLimits) -> String {
        match self {
            Refused::NameTooLong => format!("hub name longer than {} bytes", limits.max_name),
            Refused::MessageTooLarge => format!("hub message longer than the limit of {} bytes", limits.max_message),
            Refused::TooManyMembers => format!("more than {} hub memberships held at once", limits.members_per_instance),
            Refused::OverBudget => "hub publish budget spent".to_string(),
        }
    }
}

/// What the hub did and refused since the host started, all plugins together.
#[derive(Debug, Default)]
pub(crate) struct HubStats {
    /// Messages not sent because their member had spent its publish budget.
    pub(crate) over_budget: AtomicU64,
    /// Calls refused by another bound (names, message size, memberships).
    pub(crate) refused: AtomicU64,
    /// Memberships held now.
    pub(crate) members: AtomicU64,
    /// Messages published.
    pub(crate) messages: AtomicU64,
    /// Members disconnected because their queue was full.
    pub(crate) dropped_members: AtomicU64,
}

/// A copy of the hub's counts, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HubCounts {
    /// Rooms with members now.
    pub(crate) rooms: u64,
    /// Memberships held now.
    pub(crate) members: u64,
    /// Messages published since the host started.
    pub(crate) messages: u64,
    /// Members disconnected because their queue was full.
    pub(crate) dropped_members: u64,
    /// Publishes refused because the member's budget was spent.
    pub(crate) over_budget: u64,
    /// Calls refused by another bound (names, message size, memberships).
    pub(crate) refused: u64,
}

impl HubStats {
    /// The counts now, with `rooms` rooms in use.
    pub(crate) fn counts(&self, rooms: u64) -> HubCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HubCounts {
            rooms,
            members: get(&self.members),
            messages: get(&self.messages),
            dropped_members: get(&self.dropped_members),
            over_budget: get(&self.over_budget),
            refused: get(&self.refused),
        }
    }
}

/// One member's publish budget: two token buckets (bytes and messages) that refill at
/// the per-second rates and hold at most [`HubLimits::publish_burst`] of them.
#[derive(Debug)]
pub(crate) struct PublishBudget {
    bytes: f64,
    messages: f64,
    /// When the buckets were last refilled ([`coarse_clock`] nanos).
    refilled: u64,
}

impl PublishBudget {
    /// Full buckets.
    pub(crate) fn new(limits: &HubLimits) -> Self {
        let burst = limits.publish_burst.as_secs_f64();
        PublishBudget {
            bytes: limits.publish_bytes_per_second as f64 * burst,
            messages: limits.publish_messages_per_second as f64 * burst,
            refilled: coarse_clock(),
        }
    }

    /// Takes one message of `len` bytes from the budget, if it has room for it.
    pub(crate) fn take(&mut self, len: usize, limits: &HubLimits) -> bool {
        self.take_at(len, limits, coarse_clock())
    }

    fn take_at(&mut self, len: usize, limits: &HubLimits, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.refilled) as f64 / 1e9;
        self.refilled = now;
        let burst = limits.publish_burst.as_secs_f64();
        let (bytes_rate, messages_rate) = (limits.publish_bytes_per_second as f64, limits.publish_messages_per_second as f64);
        self.bytes = (self.bytes + elapsed * bytes_rate).min(bytes_rate * burst);
        self.messages = (self.messages + elapsed * messages_rate).min(messages_rate * burst);
        if self.messages < 1.0 || self.bytes < len as f64 {
            return false;
        }
        self.messages -= 1.0;
        self.bytes -= len as f64;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let limits = HubLimits { publish_messages_per_second: 10, publish_burst: Duration::from_secs(2), ..HubLimits::default() };
        let mut budget = PublishBudget::new(&limits);
        let start = budget.refilled;
        let sent = (0..100).filter(|_| budget.take_at(1, &limits, start)).count();
        assert_eq!(sent, 20, "two seconds' worth at once");
        // Half a second later, five more.
        let later = start + 500_000_000;
        let sent = (0..100).filter(|_| budget.take_at(1, &limits, later)).count();
        assert_eq!(sent, 5);
    }

    #[test]
    fn the_byte_budget_counts_too() {
        let limits = HubLimits { publish_bytes_per_second: 1000, publish_burst: Duration::from_secs(1), ..HubLimits::default() };
        let mut budget = PublishBudget::new(&limits);
        let now = budget.refilled;
        assert!(budget.take_at(600, &limits, now));
        assert!(!budget.take_at(600, &limits, now), "1,200 bytes exceed the 1,000-byte burst");
        assert!(budget.take_at(400, &limits, now));
    }
}
