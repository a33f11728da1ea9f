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
//! After the plugin answered, its replies are sent in order while they fit the
//! amplification cap ([`UdpOptions::amplification`]): together at most that many times
//! the datagram's size, or 1,200 bytes if that is more; the rest are dropped and counted.
//!
//! At most [`MAX_IN_FLIGHT`] datagrams per listener are being handled at once; beyond
//! that the loop stops reading and the kernel's socket buffer absorbs (or drops) the rest,
//! so a flood cannot spawn unbounded work.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::backoff::Backoff;
use crate::bindings::{ConnectionInfo, Role, Transport};
use crate::datagram;
use crate::metrics::Counters;
use crate::service::{Ctx, Service};
use crate::session::Outcome;
pub use crate::udp_guard::FORBIDDEN_SOURCE_PORTS;
use crate::udp_guard::{Allowance, Dropped, Drops, OwnAddr, ReplyLimiter, amplification_fit, reflection_from_here};

/// Largest datagram received whole (larger ones are cut to this size by the kernel).
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Most datagrams of one listener being handled at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// Most peers whose reply allowance is tracked at once, per listener.
pub const MAX_PEERS: usize = 16_384;
/// Default of `--udp-replies-per-peer`.
pub const DEFAULT_REPLIES_PER_PEER: u32 = 100;
/// Default of `--udp-amplification`.
pub const DEFAULT_AMPLIFICATION: u32 = 3;
/// Settings of every UDP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Datagrams handled plus replies sent per second to one peer (IP address, IPv6 /64).
    pub replies_per_peer: u32,
    /// The replies to one datagram may total at most this many times its size (or
    /// [`udp_guard::AMPLIFICATION_FLOOR`] bytes); `None`: no cap.
    pub amplification: Option<u32>,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions { replies_per_peer: DEFAULT_REPLIES_PER_PEER, amplification: Some(DEFAULT_AMPLIFICATION) }
    }
}

/// `--udp-amplification`: a factor, or no cap (a type of its own so the command line
/// parser does not take the `Option` for an optional flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amplification(pub Option<u32>);

/// Parses `--udp-amplification`: `N` (N ≥ 1) or `off`.
pub fn parse_amplification(s: &str) -> Result<Amplification, String> {
    match s {
        "off" => Ok(Amplification(None)),
        _ => match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Amplification(Some(n))),
            _ => Err(format!("{s:?}: expected how many times a datagram's size its replies may total, at least 1, or off")),
        },
    }
}

/// Parses `--udp-replies-per-peer`: `N` or `N/s`, N ≥ 1.
pub fn parse_replies_per_peer(s: &str) -> Result<u32, String> {
    match crate::cli::parse_rate(s) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?}: expected a number of replies per second, at least 1 (e.g. 100 or 100/s)")),
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
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
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
                backoff.reset();
                received
            }
            Err(e) => {
                // ICMP errors reported on the socket (ECONNREFUSED) and resource shortages:
                // never stop serving; back off on repeats.
                let pause = backoff.next_pause();
                tracing::debug!(plugin = %service.name(), "udp receive failed: {e}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let reflected = reflection_from_here(peer);
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
        let task = Reply {
            amplification: options.amplification,
            socket: socket.clone(),
            service: service.clone(),
            limiter: limiter.clone(),
            drops: drops.clone(),
            ctx: ctx.clone(),
        };
        let quarantined = service.conduct.quarantined();
        ctx.tracker.spawn(ctx.rt.lanes().run(
            async move {
                let _permit = permit;
                let force = task.ctx.force.clone();
                tokio::select! {
                    () = task.answer(info, peer, payload) => {}
                    () = force.cancelled() => {}
                }
            },
            quarantined,
        ));
    }
}

/// What a datagram's task needs.
struct Reply {
    amplification: Option<u32>,
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
        let request = payload.len();
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
        let fit = amplification_fit(request, replies.iter().map(Vec::len), self.amplification);
        for (i, reply) in replies.iter().enumerate() {
            if i >= fit {
                self.drops.note(&self.service, peer, Dropped::Amplification);
                continue;
            }
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

    #[test]
    fn the_amplification_flag_takes_n_or_off() {
        assert_eq!(parse_amplification("3"), Ok(Amplification(Some(3))));
        assert_eq!(parse_amplification("off"), Ok(Amplification(None)));
        assert!(parse_amplification("0").is_err());
        assert!(parse_amplification("x").is_err());
    }

    #[test]
    fn the_flag_takes_n_or_n_per_second() {
        assert_eq!(parse_replies_per_peer("100"), Ok(100));
        assert_eq!(parse_replies_per_peer("5000/s"), Ok(5000));
        assert!(parse_replies_per_peer("0").is_err());
        assert!(parse_replies_per_peer("fast").is_err());
    }
}
