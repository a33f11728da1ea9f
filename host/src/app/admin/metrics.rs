//! `GET /metrics`: the served plugins' counters in the OpenMetrics text format.
//!
//! Nothing is counted here: the collector reads the counters the connections already
//! keep (one relaxed atomic add each, see `service::accounting`) at scrape time, so
//! metrics cost the hot path nothing and a scrape costs one pass over the plugins.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry as Metrics;

use crate::control::registry::Registry;
use crate::service::Service;
use crate::service::accounting::Snapshot;

/// The metric families: name (without the `switchboard_` prefix and a counter's
/// `_total`), help, type, and how to read the value from a service.
type Family = (&'static str, &'static str, MetricType, fn(&Service, &Snapshot) -> u64);

const FAMILIES: [Family; 7] = [
    ("downstream_cx", "Connections accepted and started.", MetricType::Counter, |_, c| c.served),
    ("downstream_cx_active", "Connections open now.", MetricType::Gauge, |s, _| s.gate.open() as u64),
    ("downstream_cx_error", "Connections whose handler returned an error.", MetricType::Counter, |_, c| c.errors),
    ("plugin_traps", "Connections ended by a trap in the plugin.", MetricType::Counter, |_, c| c.traps),
    ("downstream_cx_limit", "Connections ended by a limit (memory, CPU, idle, duration).", MetricType::Counter, |_, c| c.limit_hits),
    ("host_failures", "Connections the host failed to start.", MetricType::Counter, |_, c| c.host_failures),
    ("denied_connections", "Connections refused at admission.", MetricType::Counter, |_, c| c.refused),
];

/// Reads the registry's services at scrape time.
struct Served(Arc<Registry>);

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Served")
    }
}

impl Collector for Served {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let services = self.0.services();
        // One consistent copy of each plugin's counters for the whole scrape.
        let snapshots: Vec<Snapshot> = services.iter().map(|s| s.counters.snapshot()).collect();
        for (name, help, kind, read) in FAMILIES {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (service, snapshot) in services.iter().zip(&snapshots) {
                let labels = [("plugin", service.name().as_ref())];
                let sample = family.encode_family(&labels)?;
                let value = read(service, snapshot);
                match kind {
                    MetricType::Gauge => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(sample)?,
                    _ => ConstCounter::new(value).encode(sample)?,
                }
            }
        }
        let mut info = encoder.encode_descriptor("plugin_info", "The version each plugin runs now.", None, MetricType::Gauge)?;
        for service in &services {
            let plugin = service.current();
            let version = plugin.info.version.clone();
            let labels = [("plugin", service.name().to_string()), ("version", version)];
            ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The metrics of `registry`, named `switchboard_…`.
pub(super) fn metrics(registry: Arc<Registry>) -> Metrics {
    let mut metrics = Metrics::with_prefix("switchboard");
    metrics.register_collector(Box::new(Served(registry)));
    metrics
}

/// The text exposition of `metrics`.
pub(super) fn render(metrics: &Metrics) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, metrics);
    out
}
