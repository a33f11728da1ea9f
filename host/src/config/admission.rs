//! Admission settings: connection limits and the `--allow`/`--deny` address blocks.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::defaults;
use super::units::ValueError;

/// An address block, e.g. `127.0.0.0/8` or `::1/128`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl FromStr for Cidr {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        let net = match s.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match s.parse::<IpAddr>() {
                Ok(addr) => IpNet::from(addr),
                Err(_) => return Err(ValueError::new(s, "not an IP address or CIDR block (e.g. 10.0.0.0/8 or ::1/128)")),
            },
        };
        Ok(Cidr(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Cidr {
    /// Whether `ip` is in this block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }

    /// The prefix length: how specific the block is.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }
}

/// Who may connect, and how many at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Most connections open at once, all plugins together (at least 1).
    pub max_connections: usize,
    /// Most connections open at once from one IP address; `None`: no limit.
    pub max_per_ip: Option<usize>,
    /// Most new connections per second from one IP address; `None`: no limit.
    pub rate_per_ip: Option<u32>,
    /// Address blocks admitted.
    pub allow: Vec<Cidr>,
    /// Address blocks refused.
    pub deny: Vec<Cidr>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_connections: defaults::MAX_CONNECTIONS.0,
            max_per_ip: defaults::MAX_PER_IP.0,
            rate_per_ip: defaults::RATE_PER_IP.0,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks() {
        let c: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("127.1.2.3")) && !c.contains(ip("128.0.0.1")));
        assert!(c.contains(ip("::ffff:127.0.0.1")), "IPv4-mapped addresses match IPv4 blocks");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!("::1".parse::<Cidr>().unwrap().contains(ip("::1")));
        assert_eq!("10.1.2.3".parse::<Cidr>().unwrap().prefix_len(), 32);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().unwrap_err().to_string().contains("not an IP address"));
    }
}
