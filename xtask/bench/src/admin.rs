//! admin: what the operations plane costs. Echo's rtt and connrate loads run against two
//! switchboard processes taking turns in rounds: one without `--admin`, one with
//! `--admin 127.0.0.1:0` whose `/metrics` is scraped every second while the load runs
//! (a Prometheus server's usual interval is 15–60 s: this is the harsh case). There is
//! no tokio server: the baseline column of these rows is switchboard without the admin
//! endpoint. Goal: the plane costs at most 2 %. (The counters themselves are kept with or
//! without `--admin`, a few relaxed atomic adds per connection: both columns pay for them;
//! the other scenarios' ratios to tokio include them.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Scenario;
use crate::harness::{Bench, Sides, closed_loop_result, secs};
use crate::load::{self, Exchange, LoopOutcome, OP_TIMEOUT, bounded, connect};
use crate::process::{Server, ServerSpec};
use crate::report::{Goal, Report, Row, Unit};
use crate::rounds::ROUNDS;
use crate::scenarios::{CONNRATE_WORKERS, MESSAGE, PREFIX, RTT_CONNS};

/// How often the admin side's `/metrics` is scraped during its slices.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);
/// The goal: with the admin plane and its scrapes, at least this share of the rate.
const ADMIN_RATE_GOAL: f64 = 0.98;

/// Scrapes made during the measurement, and those that failed (with the first failure).
#[derive(Default)]
struct Scrapes {
    ok: AtomicU64,
    failed: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Bench<'_> {
    /// admin: rtt and connrate without the admin plane and with it, scraped every second.
    pub async fn admin(&self, report: &mut Report) -> Vec<Row> {
        let scrapes = Arc::new(Scrapes::default());
        let exchange = Exchange::new(PREFIX, MESSAGE);
        let rtt = self
            .with_and_without_admin(report, "msgs/s", &scrapes, async |addr, slice| {
                load::rtt(addr, RTT_CONNS, slice, exchange.clone()).await
            })
            .await;
        let connrate = self
            .with_and_without_admin(report, "conns/s", &scrapes, async |addr, slice| {
                load::connrate(addr, CONNRATE_WORKERS, slice, exchange.clone()).await
            })
            .await;
        let (ok, failed) = (scrapes.ok.load(Ordering::Relaxed), scrapes.failed.load(Ordering::Relaxed));
        let first = scrapes.first_failure.lock().map(|f| f.clone()).unwrap_or_default();
        report.note(format!(
            "admin: the baseline column of its rows is switchboard without --admin; the switchboard column is a second \
             switchboard with --admin 127.0.0.1:0 whose /metrics was scraped every {SCRAPE_EVERY:?} while the load ran \
             ({ok} scrapes answered{}); the two took turns, {ROUNDS} rounds each; the ratio is with / without (both keep \
             the counters: they are always on)",
            if failed > 0 { format!(", {failed} failed, e.g. {}", first.unwrap_or_default()) } else { String::new() }
        ));
        let s = Scenario::Admin.name();
        let row = |sides: &Sides<LoopOutcome>, metric: &str, unit: Unit, value: &dyn Fn(&LoopOutcome) -> Option<f64>| {
            let get = |o: &Option<LoopOutcome>| o.as_ref().and_then(value);
            Row::new(s, metric, unit, get(&sides.tokio), get(&sides.switchboard)).against("no admin")
        };
        vec![
            row(&rtt, "rtt msgs/s, no admin (baseline col.) → --admin + 1 s scrapes", Unit::Rate("msgs/s"), &|o| Some(o.rate()))
                .goal(Goal::RatioAtLeast(ADMIN_RATE_GOAL)),
            row(&rtt, "rtt p99, no admin → --admin + 1 s scrapes", Unit::Seconds, &|o| secs(o.latencies.percentile(99.0))),
            row(&connrate, "connrate conns/s, no admin → --admin + 1 s scrapes", Unit::Rate("conns/s"), &|o| Some(o.rate()))
                .goal(Goal::RatioAtLeast(ADMIN_RATE_GOAL)),
            row(&connrate, "connrate p50, no admin → --admin + 1 s scrapes", Unit::Seconds, &|o| secs(o.latencies.percentile(50.0))),
        ]
    }

    /// One load measured in rounds against switchboard without the admin plane (in the
    /// baseline slot) and with it, scraping `/metrics` during each of its slices.
    async fn with_and_without_admin(
        &self,
        report: &mut Report,
        unit: &'static str,
        scrapes: &Arc<Scrapes>,
        mut load: impl AsyncFnMut(SocketAddr, Duration) -> LoopOutcome,
    ) -> Sides<LoopOutcome> {
        let specs: Vec<ServerSpec> = vec![self.launcher.switchboard("echo", &[]).reference(), self.launcher.switchboard_with_admin("echo")];
        self.measure_rounds(
            report,
            Scenario::Admin,
            specs,
            async |server: &Server, slice| {
                let scraper = server.listener("admin").map(|admin| tokio::spawn(scrape_every(admin, SCRAPE_EVERY, scrapes.clone())));
                let outcome = load(server.addr, slice).await;
                if let Some(scraper) = scraper {
                    scraper.abort();
                }
                outcome
            },
            |server, outcome, notes| closed_loop_result(server, unit, outcome, notes),
        )
        .await
    }
}

/// Scrapes `admin`'s `/metrics` now and then every `every`, until aborted.
async fn scrape_every(admin: SocketAddr, every: Duration, scrapes: Arc<Scrapes>) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        match scrape(admin).await {
            Ok(()) => scrapes.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                if let Ok(mut first) = scrapes.first_failure.lock() {
                    first.get_or_insert_with(|| format!("{e:#}"));
                }
                scrapes.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// One `GET /metrics`, as a Prometheus server makes it; checks the answer is a whole
/// exposition.
async fn scrape(admin: SocketAddr) -> Result<()> {
    let mut stream = connect(admin).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n");
    bounded(OP_TIMEOUT, stream.write_all(request.as_bytes())).await?;
    let mut response = Vec::new();
    bounded(OP_TIMEOUT, stream.read_to_end(&mut response)).await?;
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") || !text.ends_with("# EOF\n") {
        bail!("not a whole exposition: {:?}", text.chars().take(120).collect::<String>());
    }
    Ok(())
}
