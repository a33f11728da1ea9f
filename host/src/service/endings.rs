//! The names of how conversations end ([`Ended`]) and why datagrams go unanswered
//! ([`Dropped`]): the `reason` labels of the metrics, each with its counter's place.

use crate::guest::closer::Closer;
use crate::guest::traffic::Activity;
use crate::instance::LimitHit;
use crate::session::Outcome;

/// How a conversation ended, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The peer closed (or reset) the connection first, and the plugin then returned.
    Remote,
    /// The plugin returned while the peer was still there.
    Local,
    /// The plugin returned an error.
    Error,
    /// The plugin trapped.
    Trap,
    /// A limit ended it.
    Limit(LimitHit),
    /// The host closed it (an operator's close, a hub member that fell behind).
    Closed,
    /// It ended during the drain at shutdown: told the host was draining, or closed
    /// when the drain ran out of time.
    Drain,
    /// The host could not start the plugin.
    HostFailure,
    /// A `tls:` listener's handshake failed (see `tls_handshake_failures` for why); the
    /// plugin never ran.
    Handshake,
}

impl Ended {
    /// Every ending, in the order of their counters.
    pub(crate) const ALL: [Ended; 12] = [
        Ended::Remote,
        Ended::Local,
        Ended::Error,
        Ended::Trap,
        Ended::Limit(LimitHit::Memory),
        Ended::Limit(LimitHit::Cpu),
        Ended::Limit(LimitHit::Idle),
        Ended::Limit(LimitHit::Duration),
        Ended::Closed,
        Ended::Drain,
        Ended::HostFailure,
        Ended::Handshake,
    ];

    /// Names how a stream conversation ended: `outcome`, what the host asked of it
    /// through `closer` (a drain, or a close; `drain_reason` is the reason a close at the
    /// drain's timeout gives) and whether its peer ended its side first (`activity`).
    pub(crate) fn of(outcome: &Outcome, closer: &Closer, drain_reason: &str, activity: &Activity) -> Ended {
        match outcome {
            Outcome::Trap(_) => Ended::Trap,
            Outcome::Limit(hit, _) => Ended::Limit(*hit),
            Outcome::Failed(_) => Ended::HostFailure,
            Outcome::Ok | Outcome::Err(_) | Outcome::Closed(_) => match closer.reason() {
                Some(reason) if reason == drain_reason => Ended::Drain,
                Some(_) => Ended::Closed,
                // Told to drain, its input ended, and it returned: the drain ended it.
                None if closer.is_draining() && !activity.ended_by_peer() => Ended::Drain,
                None if matches!(outcome, Outcome::Err(_)) => Ended::Error,
                None if activity.ended_by_peer() => Ended::Remote,
                None => Ended::Local,
            },
        }
    }

    /// The ending as a metric label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ended::Remote => "remote",
            Ended::Local => "local",
            Ended::Error => "error",
            Ended::Trap => "trap",
            Ended::Limit(LimitHit::Memory) => "limit_memory",
            Ended::Limit(LimitHit::Cpu) => "limit_cpu",
            Ended::Limit(LimitHit::Idle) => "limit_idle",
            Ended::Limit(LimitHit::Duration) => "limit_duration",
            Ended::Closed => "closed",
            Ended::Drain => "drain",
            Ended::HostFailure => "host_failure",
            Ended::Handshake => "tls_handshake",
        }
    }

    /// Its place among the counters (its position in [`Ended::ALL`]).
    pub(crate) fn index(self) -> usize {
        match self {
            Ended::Remote => 0,
            Ended::Local => 1,
            Ended::Error => 2,
            Ended::Trap => 3,
            Ended::Limit(LimitHit::Memory) => 4,
            Ended::Limit(LimitHit::Cpu) => 5,
            Ended::Limit(LimitHit::Idle) => 6,
            Ended::Limit(LimitHit::Duration) => 7,
            Ended::Closed => 8,
            Ended::Drain => 9,
            Ended::HostFailure => 10,
            Ended::Handshake => 11,
        }
    }
}

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Its source port is one of the reflecting services' (see `listener::udp_guard`).
    ReflectorPort,
    /// It claims to come from one of this host's own UDP listeners.
    OwnAddress,
    /// The address rules refuse its source.
    NotAllowed,
    /// A connection limit is reached (global, the plugin's, per IP, or the rate per IP).
    OverLimit,
    /// Its peer used up its allowance for this second.
    RateLimited,
    /// The peer table is full of active peers.
    TooManyPeers,
    /// The plugin trapped, failed or ran out of time.
    PluginFailed,
    /// Sending a reply failed (too large, or the network refused it).
    SendFailed,
    /// The replies would have exceeded the amplification cap.
    Amplification,
}

impl Dropped {
    /// Every reason, in the order of their counters.
    pub(crate) const ALL: [Dropped; 9] = [
        Dropped::ReflectorPort,
        Dropped::OwnAddress,
        Dropped::NotAllowed,
        Dropped::OverLimit,
        Dropped::RateLimited,
        Dropped::TooManyPeers,
        Dropped::PluginFailed,
        Dropped::SendFailed,
        Dropped::Amplification,
    ];

    /// A short reason for logs.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Dropped::ReflectorPort => "source port 0/7/13/17/19 (possible reflection attack)",
            Dropped::OwnAddress => "source is this host's own listener (possible reflection loop)",
            Dropped::NotAllowed => "address not allowed",
            Dropped::OverLimit => "a connection limit is reached",
            Dropped::RateLimited => "peer over its reply rate",
            Dropped::TooManyPeers => "too many peers to track",
            Dropped::PluginFailed => "the plugin failed",
            Dropped::SendFailed => "reply could not be sent",
            Dropped::Amplification => "replies larger than the amplification cap allows",
        }
    }

    /// The reason as a metric label and in the log's totals.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dropped::ReflectorPort => "reflector_port",
            Dropped::OwnAddress => "own_address",
            Dropped::NotAllowed => "not_allowed",
            Dropped::OverLimit => "over_limit",
            Dropped::RateLimited => "rate_limited",
            Dropped::TooManyPeers => "too_many_peers",
            Dropped::PluginFailed => "plugin_failed",
            Dropped::SendFailed => "send_failed",
            Dropped::Amplification => "amplification",
        }
    }

    /// Whether it counts as a refusal of the datagram by one of the UDP guards (the
    /// address rules and limits are counted as admission refusals already; a failed
    /// plugin or send is no refusal).
    pub(crate) fn guard_refusal(self) -> bool {
        !matches!(self, Dropped::NotAllowed | Dropped::OverLimit | Dropped::PluginFailed | Dropped::SendFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_named_from_the_outcome_the_closer_and_the_peer() {
        let (closer, activity) = (Closer::new(), Activity::new());
        const DRAIN: &str = "shutting down";
        assert_eq!(Ended::of(&Outcome::Ok, &closer, DRAIN, &activity), Ended::Local);
        assert_eq!(Ended::of(&Outcome::Err("no".into()), &closer, DRAIN, &activity), Ended::Error);
        activity.peer_ended();
        assert_eq!(Ended::of(&Outcome::Ok, &closer, DRAIN, &activity), Ended::Remote);
        assert_eq!(Ended::of(&Outcome::Trap("x".into()), &closer, DRAIN, &activity), Ended::Trap);
        let idle = Outcome::Limit(LimitHit::Idle, "quiet".into());
        assert_eq!(Ended::of(&idle, &closer, DRAIN, &activity).name(), "limit_idle");
        closer.close(DRAIN);
        assert_eq!(Ended::of(&Outcome::Ok, &closer, DRAIN, &activity), Ended::Drain);
        let (drained, quiet) = (Closer::new(), Activity::new());
        drained.drain();
        assert_eq!(Ended::of(&Outcome::Ok, &drained, DRAIN, &quiet), Ended::Drain, "its input ended with the drain");
        assert_eq!(Ended::of(&Outcome::Ok, &drained, DRAIN, &activity), Ended::Remote, "its peer left first");
        let other = Closer::new();
        other.close("hub queue full");
        assert_eq!(Ended::of(&Outcome::Closed("hub queue full".into()), &other, DRAIN, &activity), Ended::Closed);
        assert!(Ended::ALL.iter().enumerate().all(|(i, e)| e.index() == i), "index() is the place in ALL");
        let names: Vec<_> = Ended::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), names.iter().collect::<std::collections::BTreeSet<_>>().len(), "names are unique");
    }
}
