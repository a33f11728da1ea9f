//! Settings of every UDP listener: the per-peer reply allowance and the amplification cap.

use super::defaults;

/// Settings of every UDP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Datagrams handled plus replies sent per second to one peer (IP address, IPv6 /64).
    pub replies_per_peer: u32,
    /// The replies to one datagram may total at most this many times its size (or a
    /// floor of 1,200 bytes); `None`: no cap.
    pub amplification: Option<u32>,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions { replies_per_peer: defaults::UDP_REPLIES_PER_PEER.0, amplification: defaults::UDP_AMPLIFICATION.0 }
    }
}
