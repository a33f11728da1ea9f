//! The Redis backplane: rooms spread over every host on one Redis (or Valkey) server.
//!
//! - Messages: room `NAME` is the channel `PREFIX NAME`. A local member's message goes on
//!   a bounded outbound queue; one task drains it into pipelined `PUBLISH`es on one
//!   connection, so the order per publisher holds. Each host subscribes once to the
//!   pattern `PREFIX*` (RESP3 push; the connection manager resubscribes after a
//!   reconnect, and so do we) and delivers each message to the room's local members. A
//!   message carries its host's id and member id ([`wire`]): a host drops its own.
//! - Presence: every [`HEARTBEAT`] (and soon after a join, leave or rename) a host
//!   writes, per room with local members, its member list to `PREFIX members:HOST:NAME`
//!   (expires after [`EXPIRY`]) and its id to the set `PREFIX hosts:NAME`, and reads the
//!   other hosts' lists into the room's cache: a host that dies vanishes within the
//!   expiry. The hub's `count`/`names` read the cache and never wait on the network.
//! - Faults: the connection is made in the background; while Redis is unreachable local
//!   rooms go on, publishes to other hosts are dropped and counted, and the heartbeat
//!   retries every [`RETRY`]. Losing and regaining Redis are logged once each.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisError, Value};
use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::counts::BackplaneCounts;
use super::limits::HubLimits;
use super::room::{Remote, Room, Rooms, unix_micros};
use crate::config::RedisHub;

mod wire;

/// How often a host refreshes its presence and reads the others'.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// How soon presence is retried while Redis is unreachable.
const RETRY: Duration = Duration::from_millis(250);
/// How long a host's members stay listed after its last heartbeat.
pub(crate) const EXPIRY: Duration = Duration::from_secs(5);
/// The shortest gap between two presence updates (a burst of joins makes one).
const MIN_GAP: Duration = Duration::from_millis(50);
/// Most messages waiting for Redis; more are dropped and counted.
const QUEUE_MESSAGES: usize = 4096;
/// Most bytes waiting for Redis; more are dropped and counted.
const QUEUE_BYTES: usize = 8 << 20;
/// Most messages, and about the most bytes, in one pipeline.
const BATCH_MESSAGES: usize = 512;
const BATCH_BYTES: usize = 1 << 20;

/// Why the Redis backplane cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    /// The URL is not one the Redis client accepts.
    #[error("--hub {url}: not a usable Redis address")]
    Url {
        /// The URL given.
        url: String,
        /// The client's reason.
        #[source]
        source: RedisError,
    },
    /// Started outside the async runtime (a bug in the caller).
    #[error("the hub backplane must be started inside the async runtime")]
    NoRuntime,
}

/// One host's side of the Redis backplane.
pub(crate) struct RedisBackplane {
    /// This host's id (random per process), on every message and presence entry.
    host: u64,
    url: String,
    prefix: String,
    outbound: mpsc::Sender<Outbound>,
    queued_bytes: AtomicUsize,
    connected: AtomicBool,
    /// Set once the first "unreachable" is logged, so a long outage logs once.
    warned: AtomicBool,
    /// Set while publishes are being dropped, so a burst of drops logs once.
    dropping: AtomicBool,
    dirty: Arc<Notify>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_full: AtomicU64,
    dropped_disconnected: AtomicU64,
    lost: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
}

/// A message on its way to Redis.
struct Outbound {
    channel: Vec<u8>,
    payload: Vec<u8>,
}

impl Outbound {
    fn size(&self) -> usize {
        self.channel.len() + self.payload.len()
    }
}

impl RedisBackplane {
    /// Starts the connection (in the background) and the publisher and presence tasks.
    pub(super) fn start(
        config: &RedisHub,
        rooms: Weak<Rooms>,
        limits: HubLimits,
        dirty: Arc<Notify>,
    ) -> Result<Arc<Self>, RedisStartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RedisStartError::NoRuntime)?;
        let url = config.url.to_string();
        let bad = |source| RedisStartError::Url { url: url.clone(), source };
        let info = url.as_str().into_connection_info().map_err(bad)?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = ::redis::Client::open(info.set_redis_settings(settings)).map_err(bad)?;

        let (outbound, queue) = mpsc::channel(QUEUE_MESSAGES);
        let host = RandomState::new().hash_one(std::process::id()) | 1;
        let this = Arc::new(RedisBackplane {
            host,
            url: url.clone(),
            prefix: config.prefix.clone(),
            outbound,
            queued_bytes: AtomicUsize::new(0),
            connected: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            dropping: AtomicBool::new(false),
            dirty,
            stats: Stats::default(),
        });
        // Pushes (messages, and the library's own "disconnected") are handled where they
        // arrive: delivery only queues, so nothing waits and nothing piles up here.
        let pushes = {
            let (this, rooms) = (Arc::downgrade(&this), rooms.clone());
            move |push: PushInfo| -> Result<(), std::convert::Infallible> {
                if let Some(this) = this.upgrade() {
                    this.on_push(push, &rooms);
                }
                Ok(())
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_push_sender(pushes)
            .set_automatic_resubscription()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = {
            let _entered = runtime.enter();
            ConnectionManager::new_lazy_with_config(client, config).map_err(bad)?
        };
        runtime.spawn(publisher(Arc::downgrade(&this), conn.clone(), queue));
        runtime.spawn(presence(Arc::downgrade(&this), this.dirty.clone(), conn, rooms, limits));
        tracing::info!(hub = %url, prefix = %this.prefix, host = %format!("{host:016x}"), "hub rooms span every host on this Redis");
        Ok(this)
    }

    /// Queues a local member's message for the other hosts; drops it (counted) when
    /// Redis is unreachable or the queue is full.
    pub(super) fn publish(&self, room: &str, member: u64, msg: &Bytes) {
        if !self.connected.load(Ordering::Relaxed) {
            self.stats.dropped_disconnected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let item = Outbound { channel: self.channel(room), payload: wire::message(self.host, member, unix_micros(), msg) };
        let size = item.size();
        let before = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if before + size > QUEUE_BYTES || self.outbound.try_send(item).is_err() {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            let total = self.stats.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.dropping.swap(true, Ordering::Relaxed) {
                tracing::warn!(hub = %self.url, dropped_total = total, "hub backplane: Redis is not keeping up; messages to other hosts are dropped");
            }
        }
    }

    /// The counters.
    pub(super) fn counts(&self) -> BackplaneCounts {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BackplaneCounts {
            sent: get(&s.sent),
            received: get(&s.received),
            dropped_full: get(&s.dropped_full),
            dropped_disconnected: get(&s.dropped_disconnected),
            lost: get(&s.lost),
            connects: get(&s.connects),
            disconnects: get(&s.disconnects),
        }
    }

    fn channel(&self, room: &str) -> Vec<u8> {
        [self.prefix.as_bytes(), room.as_bytes()].concat()
    }

    /// `PREFIX hosts:NAME`: the ids of the hosts with members in room NAME.
    fn hosts_key(&self, room: &str) -> String {
        format!("{}hosts:{room}", self.prefix)
    }

    /// `PREFIX members:HOST:NAME`: host HOST's members of room NAME.
    fn members_key(&self, host: &str, room: &str) -> String {
        format!("{}members:{host}:{room}", self.prefix)
    }

    fn on_push(&self, push: PushInfo, rooms: &Weak<Rooms>) {
        let (channel, payload) = match (push.kind, push.data.as_slice()) {
            (PushKind::Disconnection, _) => return self.lost("the connection closed"),
            (PushKind::PMessage, [_, Value::BulkString(c), Value::BulkString(p)]) => (c, p),
            (PushKind::Message, [Value::BulkString(c), Value::BulkString(p)]) => (c, p),
            _ => return,
        };
        let Some(room) = channel.strip_prefix(self.prefix.as_bytes()).and_then(|r| std::str::from_utf8(r).ok()) else { return };
        let Some((host, at, msg)) = wire::parse_message(payload) else { return };
        if host == self.host {
            return; // our own message: its room here had it already
        }
        if let Some(room) = rooms.upgrade().and_then(|rooms| Room::find(&rooms, room)) {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            room.deliver(&Bytes::copy_from_slice(msg), None, Some(at));
        }
    }

    /// Marks Redis unreachable; logs (and counts) it the first time after a connect.
    fn lost(&self, why: &str) {
        if self.connected.swap(false, Ordering::Relaxed) {
            let total = self.stats.disconnects.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(hub = %self.url, disconnects = total, "hub backplane: lost Redis ({why}); local rooms go on, other hosts are reached again once it is back");
            self.dirty.notify_one();
        } else if !self.warned.swap(true, Ordering::Relaxed) && self.stats.connects.load(Ordering::Relaxed) == 0 {
            tracing::warn!(hub = %self.url, "hub backplane: Redis is unreachable ({why}); serving local rooms, connecting when it is up");
        }
    }

    fn up(&self) {
        if !self.connected.swap(true, Ordering::Relaxed) {
            let total = self.stats.connects.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(hub = %self.url, connects = total, "hub backplane: connected to Redis");
        }
    }
}

/// Drains the outbound queue into pipelined `PUBLISH`es, one pipeline at a time.
async fn publisher(this: Weak<RedisBackplane>, mut conn: ConnectionManager, mut queue: mpsc::Receiver<Outbound>) {
    let mut batch = Vec::with_capacity(BATCH_MESSAGES);
    while let Some(first) = queue.recv().await {
        let mut bytes = first.size();
        batch.push(first);
        while batch.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
            match queue.try_recv() {
                Ok(next) => {
                    bytes += next.size();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let mut pipe = ::redis::pipe();
        for m in &batch {
            pipe.cmd("PUBLISH").arg(&m.channel[..]).arg(&m.payload[..]).ignore();
        }
        let result = pipe.exec_async(&mut conn).await;
        let Some(this) = this.upgrade() else { return };
        this.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        let n = batch.len() as u64;
        batch.clear();
        match result {
            Ok(()) => {
                this.stats.sent.fetch_add(n, Ordering::Relaxed);
                if queue.is_empty() {
                    this.dropping.store(false, Ordering::Relaxed);
                }
            }
            Err(e) => {
                this.stats.lost.fetch_add(n, Ordering::Relaxed);
                this.lost(&short(&e));
            }
        }
    }
}

/// Keeps this host's presence in Redis and the other hosts' in the rooms' caches.
async fn presence(this: Weak<RedisBackplane>, dirty: Arc<Notify>, mut conn: ConnectionManager, rooms: Weak<Rooms>, limits: HubLimits) {
    let mut state = Presence { written: HashSet::new(), last_read: Instant::now(), limits };
    loop {
        let (Some(bp), Some(rooms)) = (this.upgrade(), rooms.upgrade()) else { return };
        let pause = match state.sync(&bp, &mut conn, &rooms).await {
            Ok(()) => {
                bp.up();
                HEARTBEAT
            }
            Err(e) => {
                bp.lost(&short(&e));
                state.forget_if_stale(&rooms);
                RETRY
            }
        };
        drop((bp, rooms));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = dirty.notified() => tokio::time::sleep(MIN_GAP).await,
        }
    }
}

struct Presence {
    /// Rooms this host has written presence for (to delete when they empty).
    written: HashSet<String>,
    /// When the other hosts' presence was last read.
    last_read: Instant,
    limits: HubLimits,
}

impl Presence {
    /// One round: (re)subscribe if needed, write ours, read theirs.
    async fn sync(&mut self, bp: &RedisBackplane, conn: &mut ConnectionManager, rooms: &Rooms) -> Result<(), RedisError> {
        if !bp.connected.load(Ordering::Relaxed) {
            conn.psubscribe(wire::pattern(&bp.prefix)).await?;
        }
        let me = format!("{:016x}", bp.host);
        let expiry = EXPIRY.as_millis() as u64;
        let live = Room::live(rooms);
        let mut pipe = ::redis::pipe();
        pipe.cmd("PING").ignore();
        for room in &live {
            let (count, names) = room.local_presence();
            pipe.cmd("SET").arg(bp.members_key(&me, room.name())).arg(wire::presence(count, &names)).arg("PX").arg(expiry).ignore();
            pipe.cmd("SADD").arg(bp.hosts_key(room.name())).arg(&me).ignore();
            pipe.cmd("PEXPIRE").arg(bp.hosts_key(room.name())).arg(2 * expiry).ignore();
            pipe.cmd("SMEMBERS").arg(bp.hosts_key(room.name()));
        }
        let names: HashSet<String> = live.iter().map(|r| r.name().to_string()).collect();
        for gone in self.written.difference(&names) {
            pipe.cmd("DEL").arg(bp.members_key(&me, gone)).ignore();
            pipe.cmd("SREM").arg(bp.hosts_key(gone)).arg(&me).ignore();
        }
        let hosts: Vec<Vec<String>> = pipe.query_async(conn).await?;
        self.written = names;

        let mut asked = Vec::new();
        let mut read = ::redis::pipe();
        for (i, (room, hosts)) in live.iter().zip(&hosts).enumerate() {
            for host in hosts.iter().filter(|h| **h != me) {
                read.cmd("GET").arg(bp.members_key(host, room.name()));
                asked.push((i, host));
            }
        }
        let lists: Vec<Option<Vec<u8>>> = if asked.is_empty() { Vec::new() } else { read.query_async(conn).await? };
        let mut remote = vec![Remote::default(); live.len()];
        let mut stale = ::redis::pipe();
        for ((i, host), list) in asked.into_iter().zip(lists) {
            match list.as_deref().and_then(wire::parse_presence) {
                Some((count, names)) => {
                    remote[i].count += count;
                    remote[i].names.extend(names);
                }
                // Expired: that host stopped (or lost Redis) EXPIRY ago.
                None => {
                    stale.cmd("SREM").arg(bp.hosts_key(live[i].name())).arg(host).ignore();
                }
            }
        }
        if !stale.is_empty() {
            stale.exec_async(conn).await?;
        }
        for (room, mut remote) in live.iter().zip(remote) {
            remote.names.sort_unstable();
            remote.names.truncate(self.limits.max_names);
            room.set_remote(remote);
        }
        self.last_read = Instant::now();
        Ok(())
    }

    /// Without Redis for longer than the expiry, the other hosts' members are unknown:
    /// list only this host's.
    fn forget_if_stale(&mut self, rooms: &Rooms) {
        if self.last_read.elapsed() > EXPIRY {
            for room in Room::live(rooms) {
                room.set_remote(Remote::default());
            }
        }
    }
}

/// A Redis error on one line, for the log.
fn short(e: &RedisError) -> String {
    e.to_string().replace('\n', " ")
}
