//! UDP listeners: every datagram goes to a fresh instance's `handle-datagram` (see
//! [`crate::datagram`]); each payload it returns is sent back to the sender.
//!
//! A UDP service answers whoever the source address *claims* to be, so it must not become
//! a reflector or an amplifier (CVE-1999-0103: an echo port answering a chargen port,
//! forever). Before a plugin sees a datagram the loop drops it, counts it and logs it
//! (rate-limited) when:
//! - its source port is 0, 7 (echo), 13 (daytime), 17 (qotd) or 19 (chargen);
//! - its source is one of this host's own UDP listeners (same port on the same address, on
//!   any loopback address, or on any address when the listener is bound to a wildcard);
//! - the `--allow`/`--deny` address rules refuse it;
//! - its peer has used its allowance: at most [`UdpOptions::replies_per_peer`] datagrams
//!   handled and replies sent per second per IP address (IPv6: per /64), in a token
//!   bucket. The per-peer table is bounded ([`MAX_PEERS`]); peers whose bucket is full
//!   again are forgotten first, and while the table is full of active peers new peers
//!   get no answer.
//!
//! At most [`MAX_IN_FLIGHT`] datagrams per listener are being handled at once; beyond
//! that the loop stops reading and the kernel's socket buffer absorbs (or drops) the rest,
//! so a flood cannot spawn unbounded work.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::bindings::{ConnectionInfo, Role, Transport};
use crate::datagram;
use crate::metrics::Counters;
use crate::service::{Ctx, Service};
use crate::session::Outcome;

/// Largest datagram received whole (larger ones are cut to this size by the kernel).
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Most datagrams of one listener being handled at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// Most peers whose reply allowance is tracked at once, per listener.
pub const MAX_PEERS: usize = 16_384;
/// Source ports never answered: 0 and the classic reflecting services.
pub const FORBIDDEN_SOURCE_PORTS: [u16; 5] = [0, 7, 13, 17, 19];
/// Default of `--udp-replies-per-peer`.
pub const DEFAULT_REPLIES_PER_PEER: u32 = 100;
/// How often a full peer table may be swept for peers to forget.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Settings of every UDP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Datagrams handled plus replies sent per second to one peer (IP address, IPv6 /64).
    pub replies_per_peer: u32,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions { replies_per_peer: DEFAULT_REPLIES_PER_PEER }
    }
}

/// Parses `--udp-replies-per-peer`: `N` or `N/s`, N ≥ 1.
pub fn parse_replies_per_peer(s: &str) -> Result<u32, String> {
    let n = s.trim().strip_suffix("/s").unwrap_or(s.trim());
    match n.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?}: expected a number of replies per second, at least 1 (e.g. 100 or 100/s)")),
    }
}

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Its source port is one of [`FORBIDDEN_SOURCE_PORTS`].
    ReflectorPort,
    /// It claims to come from one of this host's own UDP listeners.
    OwnAddress,
    /// The address rules refuse its source.
    NotAllowed,
    /// Its peer used up its allowance for this second.
    RateLimited,
    /// The peer table is full of active peers.
    TooManyPeers,
    /// The plugin trapped, failed or ran out of time.
    PluginFailed,
    /// Sending a reply failed (too large, or the network refused it).
    SendFailed,
}

impl Dropped {
    const ALL: [Dropped; 7] = [
        Dropped::ReflectorPort,
        Dropped::OwnAddress,
        Dropped::NotAllowed,
        Dropped::RateLimited,
        Dropped::TooManyPeers,
        Dropped::PluginFailed,
        Dropped::SendFailed,
    ];

    /// A short reason for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Dropped::ReflectorPort => "source port 0/7/13/17/19 (possible reflection attack)",
            Dropped::OwnAddress => "source is this host's own listener (possible reflection loop)",
            Dropped::NotAllowed => "address not allowed",
            Dropped::RateLimited => "peer over its reply rate",
            Dropped::TooManyPeers => "too many peers to track",
            Dropped::PluginFailed => "the plugin failed",
            Dropped::SendFailed => "reply could not be sent",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dropped::ReflectorPort => "reflector_port",
            Dropped::OwnAddress => "own_address",
            Dropped::NotAllowed => "not_allowed",
            Dropped::RateLimited => "rate_limited",
            Dropped::TooManyPeers => "too_many_peers",
            Dropped::PluginFailed => "plugin_failed",
            Dropped::SendFailed => "send_failed",
        }
    }
}

/// Least time between two log lines about dropped datagrams (per listener).
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// What one listener dropped, by reason. The first drop is logged at once; after that at
/// most one line per [`DROP_LOG_EVERY`], with how many went unlogged and the totals.
#[derive(Debug, Default)]
pub struct Drops {
    counts: [AtomicU64; Dropped::ALL.len()],
    /// When the last line was logged, and how many drops were not logged since.
    log: Mutex<(Option<Instant>, u64)>,
}

impl Drops {
    /// Counts one drop and logs it unless the log is being rate-limited.
    pub fn note(&self, service: &Service, peer: SocketAddr, why: Dropped) {
        self.counts[why as usize].fetch_add(1, Ordering::Relaxed);
        if why != Dropped::PluginFailed && why != Dropped::SendFailed {
            Counters::bump(&service.counters.refused);
        }
        let suppressed = {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
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
            tracing::warn!(plugin = %service.name(), %peer, suppressed, totals = %self.totals(), "datagram not answered: {}", why.reason());
        }
    }

    /// How many datagrams were dropped for `why`.
    pub fn count(&self, why: Dropped) -> u64 {
        self.counts[why as usize].load(Ordering::Relaxed)
    }

    /// `reason=count` for every reason counted so far.
    pub fn totals(&self) -> String {
        let parts: Vec<String> =
            Dropped::ALL.iter().filter(|w| self.count(**w) > 0).map(|w| format!("{}={}", w.name(), self.count(*w))).collect();
        parts.join(",")
    }
}

/// The addresses of this process's UDP listeners, for the own-address check.
static OWN_ADDRS: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// Keeps an address in [`OWN_ADDRS`] while the listener lives.
struct OwnAddr(SocketAddr);

impl OwnAddr {
    fn register(addr: SocketAddr) -> OwnAddr {
        OWN_ADDRS.lock().unwrap_or_else(PoisonError::into_inner).push(addr);
        OwnAddr(addr)
    }
}

impl Drop for OwnAddr {
    fn drop(&mut self) {
        let mut own = OWN_ADDRS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = own.iter().position(|a| *a == self.0) {
            own.swap_remove(i);
        }
    }
}

/// Whether a datagram from `peer` may be one of `own` listeners talking to us.
pub fn from_own_listener(peer: SocketAddr, own: &[SocketAddr]) -> bool {
    let ip = peer.ip().to_canonical();
    own.iter().any(|a| {
        let own_ip = a.ip().to_canonical();
        a.port() == peer.port() && (own_ip == ip || own_ip.is_unspecified() || (own_ip.is_loopback() && ip.is_loopback()))
    })
}

/// The reflection checks: `Some(reason)` if a datagram from `peer` must not be answered.
pub fn reflection(peer: SocketAddr, own: &[SocketAddr]) -> Option<Dropped> {
    if FORBIDDEN_SOURCE_PORTS.contains(&peer.port()) {
        Some(Dropped::ReflectorPort)
    } else if from_own_listener(peer, own) {
        Some(Dropped::OwnAddress)
    } else {
        None
    }
}

/// The key a peer's allowance is kept under: its IPv4 address, or its IPv6 /64.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-peer reply allowance: a token bucket of `rate` tokens, refilled at `rate` per
/// second, for each of at most `max_peers` peers.
pub struct ReplyLimiter {
    rate: f64,
    max_peers: usize,
    peers: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

/// What [`ReplyLimiter::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// This many of the tokens asked for were granted (maybe 0).
    Granted(usize),
    /// The peer is new and the table is full of active peers.
    TableFull,
}

impl ReplyLimiter {
    /// `rate` per second per peer, at most `max_peers` peers tracked.
    pub fn new(rate: u32, max_peers: usize) -> Self {
        ReplyLimiter { rate: f64::from(rate.max(1)), max_peers: max_peers.max(1), peers: HashMap::new(), last_sweep: None }
    }

    /// Peers tracked right now.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Takes up to `want` tokens from `ip`'s bucket at time `now`.
    pub fn take(&mut self, ip: IpAddr, want: usize, now: Instant) -> Allowance {
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

/// A bound UDP socket, not yet serving.
pub struct UdpListener {
    socket: UdpSocket,
    options: UdpOptions,
    _own: OwnAddr,
}

impl UdpListener {
    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// Binds `host:port`.
pub async fn bind(host: &str, port: u16, options: UdpOptions) -> io::Result<UdpListener> {
    let socket = UdpSocket::bind((host, port)).await?;
    let own = OwnAddr::register(socket.local_addr()?);
    Ok(UdpListener { socket, options, _own: own })
}

/// Answers datagrams until the service stops.
pub async fn run(listener: UdpListener, service: Arc<Service>, ctx: Ctx) {
    let UdpListener { socket, options, _own } = listener;
    let socket = Arc::new(socket);
    let local = socket.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let limiter = Arc::new(Mutex::new(ReplyLimiter::new(options.replies_per_peer, MAX_PEERS)));
    let drops = Arc::new(Drops::default());
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut backoff = Duration::from_millis(5);
    loop {
        // A slot first, then a datagram: when all slots are busy, datagrams wait in the
        // kernel's buffer instead of in host memory.
        let permit = tokio::select! {
            () = service.stopped() => break,
            permit = in_flight.clone().acquire_owned() => permit.expect("the in-flight semaphore is never closed"),
        };
        let received = tokio::select! {
            () = service.stopped() => break,
            received = socket.recv_from(&mut buf) => received,
        };
        let (n, peer) = match received {
            Ok(received) => {
                backoff = Duration::from_millis(5);
                received
            }
            Err(e) => {
                // ICMP errors reported on the socket (ECONNREFUSED) and resource shortages:
                // never stop serving; back off on repeats.
                tracing::debug!(plugin = %service.name(), "udp receive failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
                continue;
            }
        };
        let reflected = reflection(peer, &OWN_ADDRS.lock().unwrap_or_else(PoisonError::into_inner));
        let refused = reflected.or_else(|| (!ctx.admission.address_allowed(peer.ip())).then_some(Dropped::NotAllowed));
        if let Some(why) = refused {
            drops.note(&service, peer, why);
            continue;
        }
        // Handling the datagram costs the first token (so a flood from one peer costs
        // the plugin nothing once its allowance is used); extra replies cost one each.
        match limiter.lock().unwrap_or_else(PoisonError::into_inner).take(peer.ip(), 1, Instant::now()) {
            Allowance::Granted(1) => {}
            Allowance::Granted(_) => {
                drops.note(&service, peer, Dropped::RateLimited);
                continue;
            }
            Allowance::TableFull => {
                drops.note(&service, peer, Dropped::TooManyPeers);
                continue;
            }
        }
        let payload = buf[..n].to_vec();
        let info = ConnectionInfo {
            id: ctx.rt.next_conn_id(),
            transport: Transport::Udp,
            role: Role::Accepted,
            peer: peer.to_string(),
            local: local.clone(),
        };
        let task =
            Reply { socket: socket.clone(), service: service.clone(), limiter: limiter.clone(), drops: drops.clone(), ctx: ctx.clone() };
        ctx.tracker.spawn(async move {
            let _permit = permit;
            let force = task.ctx.force.clone();
            tokio::select! {
                () = task.answer(info, peer, payload) => {}
                () = force.cancelled() => {}
            }
        });
    }
}

/// What a datagram's task needs.
struct Reply {
    socket: Arc<UdpSocket>,
    service: Arc<Service>,
    limiter: Arc<Mutex<ReplyLimiter>>,
    drops: Arc<Drops>,
    ctx: Ctx,
}

impl Reply {
    async fn answer(self, info: ConnectionInfo, peer: SocketAddr, payload: Vec<u8>) {
        Counters::bump(&self.service.counters.served);
        let plugin = self.service.current();
        let replies = match datagram::handle(&self.ctx.rt, &plugin, info.id, peer, payload).await {
            Ok(replies) => replies,
            Err(outcome) => {
                self.service.account(&info, &outcome);
                self.drops.note(&self.service, peer, Dropped::PluginFailed);
                return;
            }
        };
        self.service.account(&info, &Outcome::Ok);
        // The first reply was paid for when the datagram was admitted.
        let extra = replies.len().saturating_sub(1);
        let allowed = if extra == 0 {
            replies.len()
        } else {
            match self.limiter.lock().unwrap_or_else(PoisonError::into_inner).take(peer.ip(), extra, Instant::now()) {
                Allowance::Granted(n) => 1 + n,
                Allowance::TableFull => 1,
            }
        };
        for (i, reply) in replies.iter().enumerate() {
            if i >= allowed {
                self.drops.note(&self.service, peer, Dropped::RateLimited);
                continue;
            }
            if let Err(e) = self.socket.send_to(reply, peer).await {
                tracing::debug!(plugin = %self.service.name(), %peer, len = reply.len(), "udp send failed: {e}");
                self.drops.note(&self.service, peer, Dropped::SendFailed);
            }
        }
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

    #[test]
    fn the_flag_takes_n_or_n_per_second() {
        assert_eq!(parse_replies_per_peer("100"), Ok(100));
        assert_eq!(parse_replies_per_peer("5000/s"), Ok(5000));
        assert!(parse_replies_per_peer("0").is_err());
        assert!(parse_replies_per_peer("fast").is_err());
    }
}
