//! The UDP guards: what keeps a UDP service from becoming a reflector or an amplifier
//! (CVE-1999-0103): forbidden source ports, datagrams from this host's own listeners, a
//! per-peer allowance of datagrams handled and replies sent per second, and a cap on the
//! bytes sent back for one datagram ([`amplification_fit`]). Also how drops are counted
//! and logged. Used by [`super::udp`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::service::Service;
pub(crate) use crate::service::accounting::Dropped;
use crate::service::accounting::ListenerStats;

/// Source ports never answered: 0 and the classic reflecting services.
pub const FORBIDDEN_SOURCE_PORTS: [u16; 5] = [0, 7, 13, 17, 19];
/// How often a full peer table may be swept for peers to forget.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Least time between two log lines about dropped datagrams (per listener).
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs what one listener dropped (counted by reason in its [`ListenerStats`]). The first
/// drop is logged at once; after that at most one line per [`DROP_LOG_EVERY`], with how
/// many went unlogged and the totals.
#[derive(Debug, Default)]
pub(crate) struct Drops {
    /// When the last line was logged, and how many drops were not logged since.
    log: Mutex<(Option<Instant>, u64)>,
}

impl Drops {
    /// Counts one drop in `stats` and logs it unless the log is being rate-limited.
    pub(crate) fn note(&self, service: &Service, stats: &ListenerStats, peer: SocketAddr, why: Dropped) {
        stats.dropped(why);
        let suppressed = {
            let mut log = self.log.lock();
            let (last, unlogged) = &mut *log;
            if last.is_some_and(|t| t.elapsed() < DROP_LOG_EVERY) {
                *unlogged += 1;
                None
            } else {
                *last = Some(Instant::now());
                Some(std::mem::take(unlogged))
            }
        };
        if let Some(suppressed) = suppressed {
            tracing::warn!(plugin = %service.name(), %peer, suppressed, totals = %totals(stats), "datagram not answered: {}", why.reason());
        }
    }
}

/// `reason=count` for every reason `stats` counted so far.
fn totals(stats: &ListenerStats) -> String {
    let parts: Vec<String> =
        Dropped::ALL.iter().map(|w| (w, stats.dropped_for(*w))).filter(|(_, n)| *n > 0).map(|(w, n)| format!("{}={n}", w.name())).collect();
    parts.join(",")
}

/// The addresses of this process's UDP listeners, for the own-address check.
static OWN_ADDRS: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// Why a datagram from `peer` must not be answered because of where it comes from:
/// a forbidden source port, or one of this process's own listeners.
pub(crate) fn reflection_from_here(peer: SocketAddr) -> Option<Dropped> {
    reflection(peer, &OWN_ADDRS.lock())
}

/// Keeps an address in [`OWN_ADDRS`] while the listener lives.
pub(crate) struct OwnAddr(SocketAddr);

impl OwnAddr {
    pub(crate) fn register(addr: SocketAddr) -> OwnAddr {
        OWN_ADDRS.lock().push(addr);
        OwnAddr(addr)
    }
}

impl Drop for OwnAddr {
    fn drop(&mut self) {
        let mut own = OWN_ADDRS.lock();
        if let Some(i) = own.iter().position(|a| *a == self.0) {
            own.swap_remove(i);
        }
    }
}

/// Whether a datagram from `peer` may be one of `own` listeners talking to us.
pub(crate) fn from_own_listener(peer: SocketAddr, own: &[SocketAddr]) -> bool {
    let ip = peer.ip().to_canonical();
    own.iter().any(|a| {
        let own_ip = a.ip().to_canonical();
        a.port() == peer.port() && (own_ip == ip || own_ip.is_unspecified() || (own_ip.is_loopback() && ip.is_loopback()))
    })
}

/// The reflection checks: `Some(reason)` if a datagram from `peer` must not be answered.
pub(crate) fn reflection(peer: SocketAddr, own: &[SocketAddr]) -> Option<Dropped> {
    if FORBIDDEN_SOURCE_PORTS.contains(&peer.port()) {
        Some(Dropped::ReflectorPort)
    } else if from_own_listener(peer, own) {
        Some(Dropped::OwnAddress)
    } else {
        None
    }
}

/// The key a peer's allowance is kept under: its IPv4 address, or its IPv6 /64.
pub(crate) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Bytes any datagram may be answered with, however small it was: a short answer to a
/// tiny request (a greeting, an error) is not an amplification worth stopping.
pub const AMPLIFICATION_FLOOR: usize = 1200;

/// How many of `replies` (their sizes, in order) fit the amplification cap for a request
/// of `request` bytes: together at most `factor` × `request` bytes, or
/// [`AMPLIFICATION_FLOOR`] if that is more. `None`: no cap.
pub(crate) fn amplification_fit(request: usize, replies: impl IntoIterator<Item = usize>, factor: Option<u32>) -> usize {
    let Some(factor) = factor else { return usize::MAX };
    let budget = request.saturating_mul(factor as usize).max(AMPLIFICATION_FLOOR);
    let mut sent = 0usize;
    replies
        .into_iter()
        .take_while(|&size| {
            sent = sent.saturating_add(size);
            sent <= budget
        })
        .count()
}

/// Per-peer reply allowance: a token bucket of `rate` tokens, refilled at `rate` per
/// second, for each of at most `max_peers` peers.
pub(crate) struct ReplyLimiter {
    rate: f64,
    max_peers: usize,
    peers: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

/// What [`ReplyLimiter::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allowance {
    /// This many of the tokens asked for were granted (maybe 0).
    Granted(usize),
    /// The peer is new and the table is full of active peers.
    TableFull,
}

impl ReplyLimiter {
    /// `rate` per second per peer, at most `max_peers` peers tracked.
    pub(crate) fn new(rate: u32, max_peers: usize) -> Self {
        ReplyLimiter { rate: f64::from(rate.max(1)), max_peers: max_peers.max(1), peers: HashMap::new(), last_sweep: None }
    }

    /// Peers tracked right now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Takes up to `want` tokens from `ip`'s bucket at time `now`.
    pub(crate) fn take(&mut self, ip: IpAddr, want: usize, now: Instant) -> Allowance {
        let key = peer_key(ip);
        if !self.peers.contains_key(&key) && self.peers.len() >= self.max_peers {
            let due = self.last_sweep.is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
            if due {
                self.last_sweep = Some(now);
                // A bucket that has refilled completely is the same as no bucket.
                let full_after = Duration::from_secs_f64(1.0);
                self.peers.retain(|_, b| now.saturating_duration_since(b.last) < full_after);
            }
            if self.peers.len() >= self.max_peers {
                return Allowance::TableFull;
            }
        }
        let rate = self.rate;
        let bucket = self.peers.entry(key).or_insert(Bucket { tokens: rate, last: now });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.last = now;
        let granted = (bucket.tokens.floor() as usize).min(want);
        bucket.tokens -= granted as f64;
        Allowance::Granted(granted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reflector_ports_and_own_listeners_are_refused() {
        let own = [addr("127.0.0.1:5000"), addr("0.0.0.0:6000"), addr("[::1]:7000")];
        for port in FORBIDDEN_SOURCE_PORTS {
            assert_eq!(reflection(SocketAddr::new("192.0.2.1".parse().unwrap(), port), &own), Some(Dropped::ReflectorPort));
        }
        assert_eq!(reflection(addr("127.0.0.1:5000"), &own), Some(Dropped::OwnAddress));
        assert_eq!(reflection(addr("127.0.0.2:5000"), &own), Some(Dropped::OwnAddress), "any loopback address is this host");
        assert_eq!(reflection(addr("192.0.2.7:6000"), &own), Some(Dropped::OwnAddress), "a wildcard listener owns every address");
        assert_eq!(reflection(addr("[::ffff:127.0.0.1]:5000"), &own), Some(Dropped::OwnAddress), "v4-mapped");
        assert_eq!(reflection(addr("[::1]:7000"), &own), Some(Dropped::OwnAddress));
        assert_eq!(reflection(addr("192.0.2.7:5000"), &own), None);
        assert_eq!(reflection(addr("127.0.0.1:5001"), &own), None);
        assert_eq!(reflection(addr("127.0.0.1:20"), &own), None);
    }

    #[test]
    fn the_rate_is_a_token_bucket_per_peer() {
        let t0 = Instant::now();
        let mut limiter = ReplyLimiter::new(10, 100);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let granted: usize = (0..50).map(|_| matches!(limiter.take(a, 1, t0), Allowance::Granted(1)) as usize).sum();
        assert_eq!(granted, 10, "a burst gets the bucket's size");
        assert_eq!(limiter.take(b, 1, t0), Allowance::Granted(1), "other peers are not affected");
        assert_eq!(limiter.take(a, 1, t0 + Duration::from_millis(150)), Allowance::Granted(1), "refills at the rate");
        assert_eq!(limiter.take(a, 5, t0 + Duration::from_millis(160)), Allowance::Granted(0));
        assert_eq!(limiter.take(a, 50, t0 + Duration::from_secs(5)), Allowance::Granted(10), "never more than one second's worth");
    }

    #[test]
    fn replies_fit_the_amplification_cap_in_order() {
        // Echo: the reply is the request and a 6-byte prefix.
        assert_eq!(amplification_fit(1000, [1006], Some(3)), 1);
        assert_eq!(amplification_fit(0, [6], Some(3)), 1, "a tiny answer to an empty datagram");
        // One byte in, 64 KiB out: refused.
        assert_eq!(amplification_fit(1, [65_507], Some(3)), 0);
        // Several replies: the ones that fit, in order, up to 3 × 1000 bytes.
        assert_eq!(amplification_fit(1000, [1000, 1000, 1000, 1000], Some(3)), 3);
        assert_eq!(amplification_fit(10, [AMPLIFICATION_FLOOR, 1], Some(3)), 1, "the floor is the budget here");
        assert_eq!(amplification_fit(1, [65_507, 65_507], None), usize::MAX, "no cap");
    }

    #[test]
    fn ipv6_peers_share_a_bucket_per_64() {
        let t0 = Instant::now();
        let mut limiter = ReplyLimiter::new(2, 100);
        assert_eq!(limiter.take("2001:db8::1".parse().unwrap(), 1, t0), Allowance::Granted(1));
        assert_eq!(limiter.take("2001:db8::ffff:2".parse().unwrap(), 5, t0), Allowance::Granted(1));
        assert_eq!(limiter.take("2001:db8:0:1::1".parse().unwrap(), 5, t0), Allowance::Granted(2));
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn the_peer_table_stays_bounded() {
        let t0 = Instant::now();
        let mut limiter = ReplyLimiter::new(5, 3);
        for i in 1..=3u8 {
            assert_eq!(limiter.take(IpAddr::from([192, 0, 2, i]), 1, t0), Allowance::Granted(1));
        }
        assert_eq!(limiter.take("192.0.2.9".parse().unwrap(), 1, t0), Allowance::TableFull, "all three are active");
        // A second later every bucket is full again: those peers are forgotten.
        assert_eq!(limiter.take("192.0.2.9".parse().unwrap(), 1, t0 + Duration::from_secs(2)), Allowance::Granted(1));
        assert!(limiter.len() <= 3);
    }
}
