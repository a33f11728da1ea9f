//! Admission: who may open a connection, and how many at once. Like xinetd's
//! `instances`/`per_source`/`cps` and `only_from`/`no_access`.
//!
//! One step on every transport's path: a TCP connection once accepted, a UDP datagram
//! before an instance is made for it, a serial line before each instance takes it over.
//! A refused TCP connection is closed at once (the client sees the close rather than hang
//! in the backlog), a refused datagram gets no answer, a refused serial conversation waits
//! and tries again; each is counted. The checks never block the accept loop.
//!
//! Address rules: an address that matches no rule is admitted, unless some `--allow` is
//! given (then only allowed addresses are). Otherwise the most specific matching rule
//! (longest prefix) decides; on a tie, deny wins. So `--deny 127.0.0.0/8 --allow
//! 127.0.0.1/32` refuses 127.0.0.2 but admits 127.0.0.1.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::admission::{AdmissionConfig, Cidr};

/// Size of the per-IP table at which idle entries are purged.
const MAX_TRACKED_IPS: usize = 65_536;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
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
    /// Its listener is paused (by the operator, through the admin API).
    Paused,
    /// A PROXY-protocol listener: the connection comes from a source not in `--proxy-from`.
    ProxyUntrusted,
    /// A PROXY-protocol listener: no valid PROXY header arrived in time.
    ProxyHeader,
}

impl Refusal {
    /// Every reason, in declaration order.
    pub(crate) const ALL: [Refusal; 8] = [
        Refusal::Address,
        Refusal::Global,
        Refusal::Plugin,
        Refusal::PerIp,
        Refusal::Rate,
        Refusal::Paused,
        Refusal::ProxyUntrusted,
        Refusal::ProxyHeader,
    ];

    /// The reason as a metric label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Refusal::Address => "cidr",
            Refusal::Global => "max_connections",
            Refusal::Plugin => "plugin_max_connections",
            Refusal::PerIp => "per_ip",
            Refusal::Rate => "rate",
            Refusal::Paused => "paused",
            Refusal::ProxyUntrusted => "proxy_untrusted",
            Refusal::ProxyHeader => "proxy_header",
        }
    }

    /// A short reason for logs.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Address => "address not allowed",
            Refusal::Global => "max connections reached",
            Refusal::Plugin => "plugin's max connections reached",
            Refusal::PerIp => "max connections per IP reached",
            Refusal::Rate => "connection rate per IP exceeded",
            Refusal::Paused => "the listener is paused",
            Refusal::ProxyUntrusted => "a PROXY-protocol listener, and the source is not in --proxy-from",
            Refusal::ProxyHeader => "no valid PROXY header in time",
        }
    }
}

/// Where a conversation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A network peer (TCP connection, UDP datagram).
    Ip(IpAddr),
    /// A local device (a serial line): only the connection counts apply.
    Device,
}

/// The shared admission state.
pub(crate) struct Admission {
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
pub(crate) struct PluginGate {
    /// The plugin's own limit (0 = only the global one applies).
    max: AtomicUsize,
    open: AtomicUsize,
}

impl PluginGate {
    /// A gate admitting at most `max` connections (0 = unlimited).
    pub(crate) fn new(max: usize) -> Arc<PluginGate> {
        Arc::new(PluginGate { max: AtomicUsize::new(max), open: AtomicUsize::new(0) })
    }

    /// Changes the limit (a reloaded configuration); open connections stay.
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// How many of the plugin's connections are open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Held for the life of an admitted connection; releases its slots when dropped.
pub(crate) struct Ticket {
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
        let mut per_ip = self.admission.per_ip.lock();
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
    pub(crate) fn new(config: AdmissionConfig) -> Arc<Admission> {
        Arc::new(Admission { config, open: AtomicUsize::new(0), per_ip: Mutex::new(HashMap::new()) })
    }

    /// Connections open right now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether the address rules admit `ip`.
    pub(crate) fn address_allowed(&self, ip: IpAddr) -> bool {
        let best = |rules: &[Cidr]| rules.iter().filter(|c| c.contains(ip)).map(Cidr::prefix_len).max();
        match (best(&self.config.allow), best(&self.config.deny)) {
            (None, None) => self.config.allow.is_empty(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(d)) => a > d,
        }
    }

    /// Admits a conversation from `from` to the plugin behind `gate`, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, gate: &Arc<PluginGate>, from: Source) -> Result<Ticket, Refusal> {
        let Source::Ip(ip) = from else { return self.count_in(gate, None) };
        let ip = ip.to_canonical();
        if !self.address_allowed(ip) {
            return Err(Refusal::Address);
        }
        // The per-IP table is kept only when a per-IP limit is set (not by default).
        let mut per_ip = self.tracks_ips().then(|| self.per_ip.lock());
        if let Some(table) = per_ip.as_deref_mut() {
            self.check_ip(table, ip)?;
        }
        let ticket = self.count_in(gate, per_ip.is_some().then_some(ip))?;
        if let Some(table) = per_ip.as_deref_mut() {
            table.entry(ip).or_default().open += 1;
        }
        Ok(ticket)
    }

    /// Counts a conversation against the global and the plugin's limit.
    fn count_in(self: &Arc<Self>, gate: &Arc<PluginGate>, ip: Option<IpAddr>) -> Result<Ticket, Refusal> {
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
        Ok(Ticket { admission: self.clone(), plugin: gate.clone(), ip })
    }

    /// Whether any per-IP limit is set.
    fn tracks_ips(&self) -> bool {
        self.config.rate_per_ip.is_some() || self.config.max_per_ip.is_some()
    }

    /// The per-IP checks: the connection rate (counting this attempt) and the open count.
    fn check_ip(&self, table: &mut HashMap<IpAddr, PerIp>, ip: IpAddr) -> Result<(), Refusal> {
        if table.len() >= MAX_TRACKED_IPS {
            // Many sources (an IPv6 scan costs nothing): forget the ones with nothing open
            // and no rate window running, so the table stays bounded.
            table.retain(|_, e| e.open > 0 || e.window_start.is_some_and(|w| w.elapsed() < Duration::from_secs(1)));
        }
        let entry = table.entry(ip).or_default();
        if let Some(rate) = self.config.rate_per_ip {
            let now = Instant::now();
            match entry.window_start {
                Some(w) if now.duration_since(w) < Duration::from_secs(1) => {}
                _ => {
                    entry.window_start = Some(now);
                    entry.in_window = 0;
                }
            }
            if entry.in_window >= rate {
                return Err(Refusal::Rate);
            }
            entry.in_window += 1;
        }
        if self.config.max_per_ip.is_some_and(|max| entry.open >= max) {
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

    fn from(s: &str) -> Source {
        Source::Ip(ip(s))
    }

    fn admission(config: AdmissionConfig) -> Arc<Admission> {
        Admission::new(AdmissionConfig { max_connections: config.max_connections.max(1), ..config })
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
        let a = admission(AdmissionConfig { max_connections: 2, max_per_ip: Some(1), ..Default::default() });
        let gate = PluginGate::new(0);
        let t1 = a.admit(&gate, from("10.0.0.1")).unwrap();
        assert_eq!(a.admit(&gate, from("10.0.0.1")).err(), Some(Refusal::PerIp));
        let t2 = a.admit(&gate, from("10.0.0.2")).unwrap();
        assert_eq!(a.admit(&gate, from("10.0.0.3")).err(), Some(Refusal::Global));
        drop(t1);
        assert_eq!(a.open(), 1);
        let _t3 = a.admit(&gate, from("10.0.0.1")).unwrap();
        drop(t2);
        assert_eq!(a.open(), 1);

        let roomy = admission(AdmissionConfig { max_connections: 10, ..Default::default() });
        let small = PluginGate::new(1);
        let _t4 = roomy.admit(&small, from("10.0.0.4")).unwrap();
        assert_eq!(roomy.admit(&small, from("10.0.0.5")).err(), Some(Refusal::Plugin));
        assert_eq!(roomy.open(), 1, "a refused connection holds no slot");
        assert!(roomy.per_ip.lock().is_empty(), "without per-IP limits no address is tracked");
    }

    #[test]
    fn rate_per_ip() {
        let a = admission(AdmissionConfig { max_connections: 100, rate_per_ip: Some(3), ..Default::default() });
        let gate = PluginGate::new(0);
        let held: Vec<_> = (0..3).map(|_| a.admit(&gate, from("10.0.0.1")).unwrap()).collect();
        assert_eq!(a.admit(&gate, from("10.0.0.1")).err(), Some(Refusal::Rate));
        assert!(a.admit(&gate, from("10.0.0.2")).is_ok());
        drop(held);
    }

    #[test]
    fn a_device_counts_against_the_connection_limits_only() {
        let a = admission(AdmissionConfig { max_connections: 1, allow: vec!["10.0.0.0/8".parse().unwrap()], ..Default::default() });
        let gate = PluginGate::new(0);
        let line = a.admit(&gate, Source::Device).expect("address rules do not apply to a device");
        assert_eq!(a.admit(&gate, Source::Device).err(), Some(Refusal::Global));
        drop(line);
        assert_eq!(a.open(), 0);
    }
}
