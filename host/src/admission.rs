//! Admission: who may open a connection, and how many at once. Like xinetd's
//! `instances`/`per_source`/`cps` and `only_from`/`no_access`.
//!
//! Policy: connections are accepted and then checked at once; a refused one is closed
//! immediately (the client sees the connection close rather than hang in the backlog)
//! and counted. The checks never block the accept loop.
//!
//! Address rules: an address that matches no rule is admitted, unless some `--allow` is
//! given (then only allowed addresses are). Otherwise the most specific matching rule
//! (longest prefix) decides; on a tie, deny wins. So `--deny 127.0.0.0/8 --allow
//! 127.0.0.1/32` refuses 127.0.0.2 but admits 127.0.0.1.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An address block, e.g. `127.0.0.0/8` or `::1/128` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?}: not an IP address or CIDR block (e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: prefix length must be 0-{max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in this block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask(u128::from(net), u128::from(ip), 128, self.prefix),
            _ => false,
        }
    }
}

fn mask(net: u128, ip: u128, bits: u8, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (net >> shift) == (ip >> shift)
}

/// Size of the per-IP table at which idle entries are purged.
const MAX_TRACKED_IPS: usize = 65_536;

/// Admission settings.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// Most connections open at once, all plugins together.
    pub max_connections: usize,
    /// Most connections open at once from one IP address (0 = no limit).
    pub max_per_ip: usize,
    /// Most new connections per second from one IP address (0 = no limit).
    pub rate_per_ip: u32,
    /// Address blocks admitted.
    pub allow: Vec<Cidr>,
    /// Address blocks refused.
    pub deny: Vec<Cidr>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig { max_connections: 10_000, max_per_ip: 0, rate_per_ip: 0, allow: Vec::new(), deny: Vec::new() }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address rules refuse it.
    Address,
    /// The global connection limit is reached.
    Global,
    /// The plugin's connection limit is reached.
    Plugin,
    /// Its address has too many connections open.
    PerIp,
    /// Its address opens connections too fast.
    Rate,
}

impl Refusal {
    /// A short reason for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Address => "address not allowed",
            Refusal::Global => "max connections reached",
            Refusal::Plugin => "plugin's max connections reached",
            Refusal::PerIp => "max connections per IP reached",
            Refusal::Rate => "connection rate per IP exceeded",
        }
    }
}

/// The shared admission state.
pub struct Admission {
    config: AdmissionConfig,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, PerIp>>,
}

#[derive(Default)]
struct PerIp {
    open: usize,
    window_start: Option<Instant>,
    in_window: u32,
}

/// Counts one plugin's open connections against its own limit.
#[derive(Default)]
pub struct PluginGate {
    /// The plugin's own limit (0 = only the global one applies).
    max: AtomicUsize,
    open: AtomicUsize,
}

impl PluginGate {
    /// A gate admitting at most `max` connections (0 = unlimited).
    pub fn new(max: usize) -> Arc<PluginGate> {
        Arc::new(PluginGate { max: AtomicUsize::new(max), open: AtomicUsize::new(0) })
    }

    /// Changes the limit (a reloaded configuration); open connections stay.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }
}

/// Held for the life of an admitted connection; releases its slots when dropped.
pub struct Ticket {
    admission: Arc<Admission>,
    plugin: Arc<PluginGate>,
    /// The address, when it is counted in the per-IP table.
    ip: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
        self.plugin.open.fetch_sub(1, Ordering::Relaxed);
        let Some(ip) = self.ip else { return };
        let mut per_ip = self.admission.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = per_ip.get_mut(&ip) {
            entry.open -= 1;
            let stale = entry.window_start.is_none_or(|w| w.elapsed() > Duration::from_secs(1));
            if entry.open == 0 && stale {
                per_ip.remove(&ip);
            }
        }
    }
}

impl Admission {
    /// Admission with these settings.
    pub fn new(config: AdmissionConfig) -> Arc<Admission> {
        Arc::new(Admission { config, open: AtomicUsize::new(0), per_ip: Mutex::new(HashMap::new()) })
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether the address rules admit `ip`.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        let best = |rules: &[Cidr]| rules.iter().filter(|c| c.contains(ip)).map(|c| c.prefix).max();
        match (best(&self.config.allow), best(&self.config.deny)) {
            (None, None) => self.config.allow.is_empty(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(d)) => a > d,
        }
    }

    /// Admits a connection from `ip` to the plugin behind `gate`, or says why not.
    pub fn admit(self: &Arc<Self>, gate: &Arc<PluginGate>, ip: IpAddr) -> Result<Ticket, Refusal> {
        if !self.address_allowed(ip) {
            return Err(Refusal::Address);
        }
        // The per-IP table is kept only when a per-IP limit is set (not by default).
        let mut per_ip = self.tracks_ips().then(|| self.per_ip.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(table) = per_ip.as_deref_mut() {
            self.check_ip(table, ip)?;
        }
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.config.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Global);
        }
        let max = gate.max.load(Ordering::Relaxed);
        if gate.open.fetch_add(1, Ordering::Relaxed) >= max && max > 0 {
            gate.open.fetch_sub(1, Ordering::Relaxed);
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Plugin);
        }
        if let Some(table) = per_ip.as_deref_mut() {
            table.entry(ip).or_default().open += 1;
        }
        Ok(Ticket { admission: self.clone(), plugin: gate.clone(), ip: per_ip.is_some().then_some(ip) })
    }

    /// Whether any per-IP limit is set.
    fn tracks_ips(&self) -> bool {
        self.config.rate_per_ip > 0 || self.config.max_per_ip > 0
    }

    /// The per-IP checks: the connection rate (counting this attempt) and the open count.
    fn check_ip(&self, table: &mut HashMap<IpAddr, PerIp>, ip: IpAddr) -> Result<(), Refusal> {
        if table.len() >= MAX_TRACKED_IPS {
            // Many sources (an IPv6 scan costs nothing): forget the ones with nothing open
            // and no rate window running, so the table stays bounded.
            table.retain(|_, e| e.open > 0 || e.window_start.is_some_and(|w| w.elapsed() < Duration::from_secs(1)));
        }
        let entry = table.entry(ip).or_default();
        if self.config.rate_per_ip > 0 {
            let now = Instant::now();
            match entry.window_start {
                Some(w) if now.duration_since(w) < Duration::from_secs(1) => {}
                _ => {
                    entry.window_start = Some(now);
                    entry.in_window = 0;
                }
            }
            if entry.in_window >= self.config.rate_per_ip {
                return Err(Refusal::Rate);
            }
            entry.in_window += 1;
        }
        if self.config.max_per_ip > 0 && entry.open >= self.config.max_per_ip {
            return Err(Refusal::PerIp);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admission(config: AdmissionConfig) -> Arc<Admission> {
        Admission::new(AdmissionConfig { max_connections: config.max_connections.max(1), ..config })
    }

    #[test]
    fn cidr_blocks() {
        let c: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("127.1.2.3")) && !c.contains(ip("128.0.0.1")));
        assert!(c.contains(ip("::ffff:127.0.0.1")), "IPv4-mapped addresses match IPv4 blocks");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!("::1".parse::<Cidr>().unwrap().contains(ip("::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().unwrap_err().contains("not an IP address"));
    }

    #[test]
    fn the_most_specific_rule_decides() {
        let deny_lo = admission(AdmissionConfig { deny: vec!["127.0.0.0/8".parse().unwrap()], ..Default::default() });
        assert!(!deny_lo.address_allowed(ip("127.0.0.1")));
        assert!(deny_lo.address_allowed(ip("10.0.0.1")));
        let allow_one = admission(AdmissionConfig {
            deny: vec!["127.0.0.0/8".parse().unwrap()],
            allow: vec!["127.0.0.1/32".parse().unwrap()],
            ..Default::default()
        });
        assert!(allow_one.address_allowed(ip("127.0.0.1")));
        assert!(!allow_one.address_allowed(ip("127.0.0.2")));
        let only = admission(AdmissionConfig { allow: vec!["10.0.0.0/8".parse().unwrap()], ..Default::default() });
        assert!(!only.address_allowed(ip("127.0.0.1")), "with an allow list, unmatched addresses are refused");
        let tie = admission(AdmissionConfig {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            deny: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        });
        assert!(!tie.address_allowed(ip("10.1.1.1")), "deny wins a tie");
    }

    #[test]
    fn counts_are_released_with_the_ticket() {
        let a = admission(AdmissionConfig { max_connections: 2, max_per_ip: 1, ..Default::default() });
        let gate = PluginGate::new(0);
        let t1 = a.admit(&gate, ip("10.0.0.1")).unwrap();
        assert_eq!(a.admit(&gate, ip("10.0.0.1")).err(), Some(Refusal::PerIp));
        let t2 = a.admit(&gate, ip("10.0.0.2")).unwrap();
        assert_eq!(a.admit(&gate, ip("10.0.0.3")).err(), Some(Refusal::Global));
        drop(t1);
        assert_eq!(a.open(), 1);
        let _t3 = a.admit(&gate, ip("10.0.0.1")).unwrap();
        drop(t2);
        assert_eq!(a.open(), 1);

        let roomy = admission(AdmissionConfig { max_connections: 10, ..Default::default() });
        let small = PluginGate::new(1);
        let _t4 = roomy.admit(&small, ip("10.0.0.4")).unwrap();
        assert_eq!(roomy.admit(&small, ip("10.0.0.5")).err(), Some(Refusal::Plugin));
        assert_eq!(roomy.open(), 1, "a refused connection holds no slot");
        assert!(roomy.per_ip.lock().unwrap().is_empty(), "without per-IP limits no address is tracked");
    }

    #[test]
    fn rate_per_ip() {
        let a = admission(AdmissionConfig { max_connections: 100, rate_per_ip: 3, ..Default::default() });
        let gate = PluginGate::new(0);
        let held: Vec<_> = (0..3).map(|_| a.admit(&gate, ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(a.admit(&gate, ip("10.0.0.1")).err(), Some(Refusal::Rate));
        assert!(a.admit(&gate, ip("10.0.0.2")).is_ok());
        drop(held);
    }
}
