//! Every default of the command line and the configuration files, defined once: clap
//! shows these (through `Display`) in `--help`, and the library's `Default`s use them.

use std::time::Duration;

use super::units::{Amplification, AtLeastOne, Count, OptionalDuration, Rate, RepliesPerPeer, Size};

/// `--drain-timeout`: how long open connections may finish after SIGINT/SIGTERM.
pub const DRAIN_TIMEOUT: OptionalDuration = OptionalDuration(Some(Duration::from_secs(10)));
/// `--memory-limit`: linear memory of one instance.
pub const MEMORY_LIMIT: Size = Size(64 << 20);
/// `--admin-getfile-max`: the largest file the /getfile form fetches into its temporary
/// directory.
pub const ADMIN_GETFILE_MAX: Size = Size(1 << 30);
/// `--cpu-budget`: CPU time of one connection.
pub const CPU_BUDGET: OptionalDuration = OptionalDuration(Some(Duration::from_secs(60)));
/// `--idle-timeout`: no traffic and a waiting plugin for this long closes a connection.
pub const IDLE_TIMEOUT: OptionalDuration = OptionalDuration(Some(Duration::from_secs(300)));
/// `--max-duration`: no limit on a connection's age.
pub const MAX_DURATION: OptionalDuration = OptionalDuration(None);
/// `--keepalive`: TCP keepalive probes are off unless asked for (the idle timeout ends
/// quiet connections first by default).
pub const KEEPALIVE: OptionalDuration = OptionalDuration(None);
/// `--max-connections`: connections open at once, all plugins together.
pub const MAX_CONNECTIONS: AtLeastOne = AtLeastOne(10_000);
/// `--max-per-ip`: no per-address limit.
pub const MAX_PER_IP: Count = Count(None);
/// `--rate-per-ip`: no per-address rate limit.
pub const RATE_PER_IP: Rate = Rate(None);
/// `--udp-replies-per-peer`: datagrams answered and replies sent per second to one peer.
pub const UDP_REPLIES_PER_PEER: RepliesPerPeer = RepliesPerPeer(100);
/// `--udp-amplification`: the replies to one datagram may total 3× its size.
pub const UDP_AMPLIFICATION: Amplification = Amplification(Some(3));
/// `--hub-prefix`: what the channels and keys of hub rooms start with in Redis.
pub const HUB_PREFIX: &str = "switchboard:room:";
/// `[tls] handshake-timeout`: how long a TLS client may take to finish its handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The host of a listener that names only a port.
pub const LISTEN_HOST: &str = "127.0.0.1";
/// The line speed of a serial listener that names none (pySerial's default).
pub const BAUD: u32 = 9600;

/// The smallest `--memory-limit`: a Rust plugin's stack alone is 1 MiB.
pub const MEMORY_LIMIT_MIN: Size = Size(1 << 20);
/// The largest `--memory-limit`: all a 32-bit WebAssembly memory can address.
pub const MEMORY_LIMIT_MAX: Size = Size(4 << 30);
