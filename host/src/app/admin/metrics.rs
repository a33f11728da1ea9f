//! `GET /metrics`: what the host does, in the OpenMetrics text format.
//!
//! Nothing is counted here: the collectors read, at scrape time, the counters the
//! conversations already keep (one relaxed atomic add per event on their listener's
//! handle, see `service::accounting`), the hub's and the registry's counts, and
//! `/proc/self` ([`process`](super::process)). A scrape costs one pass over the plugins
//! and their listeners; the hot path pays nothing for it.
//!
//! Every family is listed, with its labels and meaning, in README's Operations section.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry as Metrics, Unit};

use super::process::Process;
use crate::control::registry::Registry;
use crate::service::Service;
use crate::service::accounting::{ListenerSnapshot, ListenerStats, Snapshot};
use crate::util::histogram::HistogramSnapshot;

/// One plugin as a scrape sees it: read once, so every family shows the same moment.
struct Plugin {
    service: Arc<Service>,
    counts: Snapshot,
    listeners: Vec<(Arc<ListenerStats>, ListenerSnapshot)>,
}

/// A per-listener family: name (without the prefix, a counter's `_total` or the unit),
/// help, type, unit, which listeners have it, and its samples.
struct ListenerFamily {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    unit: Option<Unit>,
    only: Only,
    read: fn(&ListenerSnapshot) -> Value<'_>,
}

/// Which listeners a family is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    All,
    /// Byte streams (TCP, TLS, serial): they have connection lengths and endings.
    Streams,
    Udp,
    Tls,
}

/// What a family reads from one listener.
enum Value<'a> {
    One(u64),
    /// One sample per `(reason, count)`.
    ByReason(&'a [(&'static str, u64)]),
    Histogram(&'a HistogramSnapshot),
}

fn listener_families() -> [ListenerFamily; 13] {
    use MetricType::{Counter, Gauge, Histogram};
    use Value::{ByReason, One};
    [
        ListenerFamily {
            name: "downstream_cx",
            help: "Connections accepted and started (UDP: datagrams handed to the plugin).",
            kind: Counter,
            unit: None,
            only: Only::All,
            read: |s| One(s.accepted),
        },
        ListenerFamily {
            name: "downstream_cx_active",
            help: "Connections open now (UDP: datagrams being handled).",
            kind: Gauge,
            unit: None,
            only: Only::All,
            read: |s| One(s.active),
        },
        ListenerFamily {
            name: "downstream_cx_closed",
            help: "Connections ended, by how: remote, local, error, trap, limit_*, closed, drain, host_failure, tls_handshake.",
            kind: Counter,
            unit: None,
            only: Only::Streams,
            read: |s| ByReason(&s.ended),
        },
        ListenerFamily {
            name: "downstream_cx_length",
            help: "How long connections lasted.",
            kind: Histogram,
            unit: Some(Unit::Seconds),
            only: Only::Streams,
            read: |s| Value::Histogram(&s.duration),
        },
        ListenerFamily {
            name: "downstream_cx_rx",
            help: "Bytes received from peers.",
            kind: Counter,
            unit: Some(Unit::Bytes),
            only: Only::All,
            read: |s| One(s.bytes_in),
        },
        ListenerFamily {
            name: "downstream_cx_tx",
            help: "Bytes sent to peers.",
            kind: Counter,
            unit: Some(Unit::Bytes),
            only: Only::All,
            read: |s| One(s.bytes_out),
        },
        ListenerFamily {
            name: "denied_connections",
            help: "Connections refused at admission, by reason: cidr, max_connections, plugin_max_connections, per_ip, rate, paused, proxy_untrusted, proxy_header.",
            kind: Counter,
            unit: None,
            only: Only::All,
            read: |s| ByReason(&s.refused),
        },
        ListenerFamily {
            name: "instantiation",
            help: "How long making a fresh instance for a connection (or datagram) took.",
            kind: Histogram,
            unit: Some(Unit::Seconds),
            only: Only::All,
            read: |s| Value::Histogram(&s.instantiation),
        },
        ListenerFamily {
            name: "udp_datagrams_answered",
            help: "Datagrams the plugin handled (with zero or more replies).",
            kind: Counter,
            unit: None,
            only: Only::Udp,
            read: |s| One(s.answered),
        },
        ListenerFamily {
            name: "udp_datagrams_dropped",
            help: "Datagrams (or replies) not answered, by reason.",
            kind: Counter,
            unit: None,
            only: Only::Udp,
            read: |s| ByReason(&s.dropped),
        },
        ListenerFamily {
            name: "tls_handshakes",
            help: "TLS handshakes completed.",
            kind: Counter,
            unit: None,
            only: Only::Tls,
            read: |s| One(s.handshakes.completed),
        },
        ListenerFamily {
            name: "tls_handshake_failures",
            help: "TLS handshakes that failed, by reason: timeout, protocol, no_client_cert, bad_client_cert, \
                   expired_client_cert, server_cert_refused, closed, shutdown.",
            kind: Counter,
            unit: None,
            only: Only::Tls,
            read: |s| ByReason(&s.handshakes.failed),
        },
        ListenerFamily {
            name: "tls_client_cert_verifications",
            help: "Client certificates checked (listeners with client-ca), by result (the reason label): \
                   ok, failed, absent (none sent, none required).",
            kind: Counter,
            unit: None,
            only: Only::Tls,
            read: |s| ByReason(&s.handshakes.client_certs),
        },
    ]
}

/// A per-plugin counter: name, help, and how to read it.
type PluginCounter = (&'static str, &'static str, fn(&Snapshot) -> u64);

const PLUGIN_COUNTERS: [PluginCounter; 4] = [
    ("plugin_errors", "Conversations whose handler returned an error.", |c| c.errors),
    ("plugin_traps", "Conversations ended by a trap in the plugin.", |c| c.traps),
    ("plugin_limit_hits", "Conversations ended by a limit (memory, CPU, idle, duration).", |c| c.limit_hits),
    ("plugin_host_failures", "Conversations the host failed to start (its failure, not the plugin's).", |c| c.host_failures),
];

/// Reads the registry's plugins, their listeners and the hub at scrape time.
struct Served(Arc<Registry>);

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Served")
    }
}

impl Collector for Served {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let plugins: Vec<Plugin> = self
            .0
            .services()
            .into_iter()
            .map(|service| {
                let listeners = service.counters.listeners().into_iter().map(|l| (l.clone(), l.snapshot())).collect();
                Plugin { counts: service.counters.snapshot(), listeners, service }
            })
            .collect();
        for family in listener_families() {
            encode_listener_family(&mut encoder, &family, &plugins)?;
        }
        self.encode_plugins(&mut encoder, &plugins)?;
        self.encode_hub(&mut encoder)
    }
}

/// Encodes one per-listener family for every plugin's listeners it is about.
fn encode_listener_family(encoder: &mut DescriptorEncoder, family: &ListenerFamily, plugins: &[Plugin]) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(family.name, family.help, family.unit.as_ref(), family.kind)?;
    for plugin in plugins {
        for (stats, snapshot) in &plugin.listeners {
            let about = match family.only {
                Only::All => true,
                Only::Streams => stats.transport != "udp",
                Only::Udp => stats.transport == "udp",
                Only::Tls => stats.transport == "tls",
            };
            if !about {
                continue;
            }
            let labels = [("plugin", plugin.service.name().as_ref()), ("listener", stats.address.as_str()), ("transport", stats.transport)];
            match (family.read)(snapshot) {
                Value::One(n) if family.kind == MetricType::Gauge => ConstGauge::new(n).encode(metric.encode_family(&labels)?)?,
                Value::One(n) => ConstCounter::new(n).encode(metric.encode_family(&labels)?)?,
                Value::ByReason(counts) => {
                    for (reason, n) in counts {
                        let labels = [labels[0], labels[1], labels[2], ("reason", reason)];
                        ConstCounter::new(*n).encode(metric.encode_family(&labels)?)?;
                    }
                }
                Value::Histogram(h) => metric.encode_family(&labels)?.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?,
            }
        }
    }
    Ok(())
}

impl Served {
    /// The per-plugin families.
    fn encode_plugins(&self, encoder: &mut DescriptorEncoder, plugins: &[Plugin]) -> Result<(), std::fmt::Error> {
        let mut info = encoder.encode_descriptor("plugin_info", "The version each plugin runs now.", None, MetricType::Gauge)?;
        for plugin in plugins {
            let current = plugin.service.current();
            let labels = [
                ("plugin", plugin.service.name().to_string()),
                ("version", current.info.version.clone()),
                ("hash", current.sha256.clone()),
                ("world", current.world.name().to_string()),
            ];
            ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        }
        for (name, help, read) in PLUGIN_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for plugin in plugins {
                ConstCounter::new(read(&plugin.counts)).encode(family.encode_family(&[("plugin", plugin.service.name().as_ref())])?)?;
            }
        }
        let help = "1 while the plugin is in quarantine (its new connections start in the heavy lane), else 0.";
        let mut quarantined = encoder.encode_descriptor("plugin_quarantined", help, None, MetricType::Gauge)?;
        for plugin in plugins {
            let value = i64::from(plugin.service.quarantine.in_force());
            ConstGauge::new(value).encode(quarantined.encode_family(&[("plugin", plugin.service.name().as_ref())])?)?;
        }
        let help = "Connections moved to the heavy lane, by reason: promoted (the plugin spun), quarantined (started there).";
        let mut moves = encoder.encode_descriptor("lane_moves", help, None, MetricType::Counter)?;
        for plugin in plugins {
            let lane = &plugin.service.lane_moves;
            let name = plugin.service.name().as_ref();
            for (reason, n) in [("promoted", &lane.promoted), ("quarantined", &lane.quarantined)] {
                let n = n.load(std::sync::atomic::Ordering::Relaxed);
                ConstCounter::new(n).encode(moves.encode_family(&[("plugin", name), ("reason", reason)])?)?;
            }
        }
        let help = "Plugin versions loaded or swapped in (result=ok, the first load included) and changes rejected (result=rejected).";
        let mut reloads = encoder.encode_descriptor("plugin_reloads", help, None, MetricType::Counter)?;
        for (name, counts) in self.0.reloads() {
            for (result, n) in [("ok", counts.ok), ("rejected", counts.rejected)] {
                ConstCounter::new(n).encode(reloads.encode_family(&[("plugin", name.as_str()), ("result", result)])?)?;
            }
        }
        let help = "TLS files re-read for a plugin: rotated (only they changed; new handshakes get them) and rejected \
                    (they did not load; the previous ones keep serving).";
        let mut tls = encoder.encode_descriptor("tls_certificate_reloads", help, None, MetricType::Counter)?;
        for (name, counts) in self.0.reloads() {
            for (result, n) in [("rotated", counts.tls_rotated), ("rejected", counts.tls_rejected)] {
                ConstCounter::new(n).encode(tls.encode_family(&[("plugin", name.as_str()), ("result", result)])?)?;
            }
        }
        Ok(())
    }

    /// The hub's families (all plugins share one hub).
    fn encode_hub(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let hub = self.0.runtime().hub().counts();
        for (name, help, value) in
            [("hub_rooms", "Hub rooms with members now.", hub.rooms), ("hub_members", "Hub memberships held now.", hub.members)]
        {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        let counters = [
            ("hub_messages", "Messages published to hub rooms.", hub.messages),
            ("hub_dropped_members", "Hub members disconnected because they did not read their queue.", hub.dropped_members),
        ];
        for (name, help, value) in counters {
            ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        let help = "Hub calls refused, by reason: over_budget (publish budget spent), bound (name, size or membership bound).";
        let mut refused = encoder.encode_descriptor("hub_refused", help, None, MetricType::Counter)?;
        for (reason, n) in [("over_budget", hub.over_budget), ("bound", hub.refused)] {
            ConstCounter::new(n).encode(refused.encode_family(&[("reason", reason)])?)?;
        }
        self.encode_backplane(encoder)
    }

    /// The backplane's families, with `--hub` only.
    fn encode_backplane(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(bp) = self.0.runtime().hub().backplane_counts() else { return Ok(()) };
        let help = "Hub messages through the backplane (--hub), by direction: sent to the other hosts, received from them.";
        let mut messages = encoder.encode_descriptor("hub_backplane_messages", help, None, MetricType::Counter)?;
        for (direction, n) in [("sent", bp.sent), ("received", bp.received)] {
            ConstCounter::new(n).encode(messages.encode_family(&[("direction", direction)])?)?;
        }
        let help = "Hub messages not sent to the other hosts, by reason: queue_full (the backplane is slow), \
                    disconnected (it is unreachable), lost (on their way when the connection failed).";
        let mut dropped = encoder.encode_descriptor("hub_backplane_dropped", help, None, MetricType::Counter)?;
        for (reason, n) in [("queue_full", bp.dropped_full), ("disconnected", bp.dropped_disconnected), ("lost", bp.lost)] {
            ConstCounter::new(n).encode(dropped.encode_family(&[("reason", reason)])?)?;
        }
        let counters = [
            ("hub_backplane_connects", "Times the backplane connection was made (the first time and after each loss).", bp.connects),
            ("hub_backplane_disconnects", "Times the backplane connection was lost.", bp.disconnects),
        ];
        for (name, help, value) in counters {
            ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        let up = u64::from(bp.connects > bp.disconnects);
        ConstGauge::new(up).encode(encoder.encode_descriptor(
            "hub_backplane_up",
            "1 while the backplane is connected.",
            None,
            MetricType::Gauge,
        )?)
    }
}

/// The metrics of `registry`: its plugins' as `switchboard_…`, the process's as
/// `process_…` (the names every Prometheus client uses for them).
pub(super) fn metrics(registry: Arc<Registry>) -> Metrics {
    let mut metrics = Metrics::default();
    metrics.register_collector(Box::new(Process));
    metrics.sub_registry_with_prefix("switchboard").register_collector(Box::new(Served(registry)));
    metrics
}

/// The text exposition of `metrics`.
pub(super) fn render(metrics: &Metrics) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, metrics);
    out
}
