//! UDP listeners: every datagram goes to a fresh instance's `handle-datagram` (see
//! `session::datagram`); each payload it returns is sent back to the sender.
//!
//! A UDP service answers whoever the source address *claims* to be, so it must not become
//! a reflector or an amplifier (CVE-1999-0103: an echo port answering a chargen port,
//! forever). Before a plugin sees a datagram the loop drops it, counts it and logs it
//! (rate-limited) when:
//! - its source port is 0, 7 (echo), 13 (daytime), 17 (qotd) or 19 (chargen);
//! - its source is one of this host's own UDP listeners (same port on the same address, on
//!   any loopback address, or on any address when the listener is bound to a wildcard);
//! - admission refuses it (the `--allow`/`--deny` rules, and the connection limits: a
//!   datagram being handled holds an instance, so it counts like a connection);
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::SocketOptions;
use super::conversation::{self, closed_at_drain_timeout};
use super::udp_guard::{Allowance, Dropped, Drops, OwnAddr, ReplyLimiter, amplification_fit, reflection_from_here};
use super::{Paused, Shared};
use crate::admission::{Refusal, Source};
use crate::config::UdpOptions;
use crate::guest::bindings::{Role, Transport};
use crate::service::Service;
use crate::service::accounting::ListenerStats;
use crate::session::{Outcome, datagram};
use crate::util::backoff::Backoff;

/// Largest datagram received whole (larger ones are cut to this size by the kernel).
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Most datagrams of one listener being handled at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// Most peers whose reply allowance is tracked at once, per listener.
pub const MAX_PEERS: usize = 16_384;

/// A bound UDP socket, not yet serving.
pub(crate) struct UdpListener {
    socket: UdpSocket,
    options: UdpOptions,
    /// Registers the socket's address for the own-address reflection guard for as long
    /// as the listener lives: dropping it ends the guard.
    own_address: OwnAddr,
}

impl UdpListener {
    /// The bound address (with the real port when 0 was asked).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// Binds `host:port` (the first address it resolves to) with the socket options of
/// `socket` (`SO_REUSEPORT`, `IPV6_V6ONLY`).
pub(crate) async fn bind(host: &str, port: u16, options: UdpOptions, socket: SocketOptions) -> io::Result<UdpListener> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} resolves to no address")))?;
    let bound = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    socket.apply(&socket2::SockRef::from(&bound), addr)?;
    bound.bind(&addr.into())?;
    adopt(bound.into(), options)
}

/// Serves a UDP socket that is already bound (passed by systemd, or bound with options).
pub(crate) fn adopt(socket: std::net::UdpSocket, options: UdpOptions) -> io::Result<UdpListener> {
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(socket)?;
    let own_address = OwnAddr::register(socket.local_addr()?);
    Ok(UdpListener { socket, options, own_address })
}

/// What every datagram of one listener shares.
struct Listener {
    socket: Arc<UdpSocket>,
    local: String,
    amplification: Option<u32>,
    limiter: Arc<Mutex<ReplyLimiter>>,
    drops: Arc<Drops>,
    stats: Arc<ListenerStats>,
    service: Arc<Service>,
    shared: Shared,
}

/// Answers datagrams until the service stops, counting into `stats`; while `paused`,
/// datagrams get no answer (and are counted as refused).
pub(crate) async fn run(listener: UdpListener, service: Arc<Service>, stats: Arc<ListenerStats>, shared: Shared, paused: Paused) {
    let UdpListener { socket, options, own_address } = listener;
    let socket = Arc::new(socket);
    let this = Arc::new(Listener {
        local: socket.local_addr().map(conversation::show).unwrap_or_default(),
        socket,
        amplification: options.amplification,
        limiter: Arc::new(Mutex::new(ReplyLimiter::new(options.replies_per_peer, MAX_PEERS))),
        drops: Arc::new(Drops::default()),
        stats,
        service,
        shared,
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
    loop {
        // A slot first, then a datagram: when all slots are busy, datagrams wait in the
        // kernel's buffer instead of in host memory.
        let permit = tokio::select! {
            () = this.service.stopped() => break,
            permit = in_flight.clone().acquire_owned() => permit.expect("the in-flight semaphore is never closed"),
        };
        let received = tokio::select! {
            () = this.service.stopped() => break,
            received = this.socket.recv_from(&mut buf) => received,
        };
        match received {
            Ok((n, peer)) => {
                backoff.reset();
                this.stats.received(n);
                if paused.load(std::sync::atomic::Ordering::Relaxed) {
                    this.service.refused(&this.stats, &conversation::show(peer), Refusal::Paused);
                    continue;
                }
                this.clone().take(peer, &buf[..n], permit);
            }
            // ICMP errors reported on the socket (ECONNREFUSED) are routine.
            Err(e) => conversation::pause_after_error(&mut backoff, &this.service, "udp receive", &e, true).await,
        }
    }
    drop(own_address);
}

impl Listener {
    /// Decides about one datagram: dropped by a guard, or handed to its own task.
    fn take(self: Arc<Self>, peer: SocketAddr, payload: &[u8], permit: OwnedSemaphorePermit) {
        if let Some(why) = reflection_from_here(peer) {
            return self.drop_one(peer, why);
        }
        let ticket = match self.shared.admission.admit(&self.service.gate, Source::Ip(peer.ip())) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                self.stats.refused(refusal);
                let why = if refusal == Refusal::Address { Dropped::NotAllowed } else { Dropped::OverLimit };
                return self.drop_one(peer, why);
            }
        };
        // Handling the datagram costs the first token (so a flood from one peer costs
        // the plugin nothing once its allowance is used); extra replies cost one each.
        match self.limiter.lock().take(peer.ip(), 1, Instant::now()) {
            Allowance::Granted(1) => {}
            Allowance::Granted(_) => return self.drop_one(peer, Dropped::RateLimited),
            Allowance::TableFull => return self.drop_one(peer, Dropped::TooManyPeers),
        }
        let payload = payload.to_vec();
        let (shared, service) = (self.shared.clone(), self.service.clone());
        let tokens = shared.drain_tokens();
        let answer = async move {
            let _held = (permit, ticket);
            self.answer(peer, payload).await;
        };
        conversation::spawn(&shared, &service, None, closed_at_drain_timeout(tokens, None, Box::pin(answer)));
    }

    /// Counts and logs one datagram (or reply) dropped.
    fn drop_one(&self, peer: SocketAddr, why: Dropped) {
        self.drops.note(&self.service, &self.stats, peer, why);
    }

    /// Runs the plugin on one datagram and sends back the replies that fit.
    async fn answer(&self, peer: SocketAddr, payload: Vec<u8>) {
        let open = self.stats.started();
        let info = conversation::info(&self.shared.rt, Transport::Udp, Role::Accepted, conversation::show(peer), self.local.clone());
        let plugin = self.service.current();
        let request = payload.len();
        let replies = match datagram::handle(&self.shared.rt, &plugin, info.id, peer, payload, &self.stats.instantiation).await {
            Ok(replies) => replies,
            Err(outcome) => {
                self.service.account(&info, &outcome);
                return self.drop_one(peer, Dropped::PluginFailed);
            }
        };
        self.service.account(&info, &Outcome::Ok);
        self.send(peer, request, &replies).await;
        // Counted after its replies and its end, so a scrape that sees it answered sees
        // their bytes and no longer counts it active.
        drop(open);
        self.stats.answered();
    }

    /// Sends `replies` in order while they fit the peer's allowance and the amplification cap.
    async fn send(&self, peer: SocketAddr, request: usize, replies: &[Vec<u8>]) {
        // The first reply was paid for when the datagram was admitted.
        let extra = replies.len().saturating_sub(1);
        let allowed = if extra == 0 {
            replies.len()
        } else {
            match self.limiter.lock().take(peer.ip(), extra, Instant::now()) {
                Allowance::Granted(n) => 1 + n,
                Allowance::TableFull => 1,
            }
        };
        let fit = amplification_fit(request, replies.iter().map(Vec::len), self.amplification);
        for (i, reply) in replies.iter().enumerate() {
            if i >= fit {
                self.drop_one(peer, Dropped::Amplification);
            } else if i >= allowed {
                self.drop_one(peer, Dropped::RateLimited);
            } else {
                match self.socket.send_to(reply, peer).await {
                    Ok(n) => self.stats.sent(n),
                    Err(e) => {
                        tracing::debug!(plugin = %self.service.name(), %peer, len = reply.len(), "udp send failed: {e}");
                        self.drop_one(peer, Dropped::SendFailed);
                    }
                }
            }
        }
    }
}
