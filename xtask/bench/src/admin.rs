//! admin: what the operations plane costs. Echo's rtt and connrate loads run against two
//! switchboard processes taking turns in rounds: one without `--admin`, one with
//! `--admin 127.0.0.1:0` whose `/metrics` is scraped every second while the load runs
//! (a Prometheus server's usual interval is 15–60 s: this is the harsh case). There is
//! no tokio server: the baseline column of these rows is switchboard without the admin
//! endpoint. Those two ratios move by several percent from run to run in both directions
//! (with the plane faster than without it as often as slower), more than the 2 % they
//! would have to resolve, so they carry no goal. The goal is on the direct measure of what
//! a scrape costs: the server's CPU time (all threads, from `schedstat`) over 2 s with
//! scrapes every 10 ms, minus its CPU time over 2 s idle, per scrape; at one scrape a
//! second that is the share of a core the plane takes. Goal: at most 2 %. (The counters
//! themselves are kept with or without `--admin`, a few relaxed atomic adds per
//! connection: both columns pay for them; the other scenarios' ratios to tokio include
//! them.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Scenario;
use crate::harness::{Bench, Sides, closed_loop_result, secs};
use crate::load::{self, Exchange, LoopOutcome, OP_TIMEOUT, bounded, connect};
use crate::process::{Server, ServerSpec};
use crate::report::{Goal, Report, Row, Unit, figure};
use crate::rounds::ROUNDS;
use crate::scenarios::{CONNRATE_WORKERS, MESSAGE, PREFIX, RTT_CONNS};

/// How often the admin side's `/metrics` is scraped during its slices.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);
/// The goal for the direct measure: a scrape a second takes at most this share of a core, in %.
const ADMIN_CPU_GOAL_PERCENT: f64 = 2.0;
/// How long each phase of the direct measure lasts (idle, then scraping).
const CPU_PHASE: Duration = Duration::from_secs(2);
/// How often `/metrics` is scraped in the direct measure's scraping phase.
const CPU_SCRAPE_EVERY: Duration = Duration::from_millis(10);

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
        let cpu = match self.scrape_cpu(exchange.clone()).await {
            Ok(cpu) => {
                report.note(format!(
                    "admin: the direct measure: {} scrapes of a {}-byte exposition in {CPU_PHASE:?} took the server {} of CPU \
                     beyond its idle {} over the same time",
                    cpu.scrapes,
                    cpu.bytes,
                    figure(Unit::Seconds, cpu.busy_s - cpu.idle_s),
                    figure(Unit::Seconds, cpu.idle_s)
                ));
                Some(cpu.per_scrape_s())
            }
            Err(e) => {
                report.note(format!("admin: the direct measure failed: {e:#}"));
                None
            }
        };
        let row = |sides: &Sides<LoopOutcome>, metric: &str, unit: Unit, value: &dyn Fn(&LoopOutcome) -> Option<f64>| {
            let get = |o: &Option<LoopOutcome>| o.as_ref().and_then(value);
            Row::new(s, metric, unit, get(&sides.tokio), get(&sides.switchboard)).against("no admin")
        };
        vec![
            row(&rtt, "rtt msgs/s, no admin (baseline col.) → --admin + 1 s scrapes", Unit::Rate("msgs/s"), &|o| Some(o.rate())),
            row(&rtt, "rtt p99, no admin → --admin + 1 s scrapes", Unit::Seconds, &|o| secs(o.latencies.percentile(99.0))),
            row(&connrate, "connrate conns/s, no admin → --admin + 1 s scrapes", Unit::Rate("conns/s"), &|o| Some(o.rate())),
            row(&connrate, "connrate p50, no admin → --admin + 1 s scrapes", Unit::Seconds, &|o| secs(o.latencies.percentile(50.0))),
            Row::new(s, "server CPU per /metrics scrape (echo, 1 listener)", Unit::Seconds, None, cpu),
            Row::new(s, "share of a core at 1 scrape/s", Unit::Percent, None, cpu.map(|c| c / SCRAPE_EVERY.as_secs_f64() * 100.0))
                .goal(Goal::AtMost(ADMIN_CPU_GOAL_PERCENT)),
        ]
    }

    /// The direct measure: a fresh `--admin` server, warmed by a short rtt load (so its
    /// histograms hold data), then its CPU over [`CPU_PHASE`] idle and over [`CPU_PHASE`]
    /// scraped every [`CPU_SCRAPE_EVERY`].
    async fn scrape_cpu(&self, exchange: Exchange) -> Result<ScrapeCpu> {
        let server = self.launcher.start(Scenario::Admin.name(), self.launcher.switchboard_with_admin("echo")).await?;
        let admin = server.listener("admin").context("the --admin server printed no admin listener")?;
        load::rtt(server.addr, RTT_CONNS, Duration::from_millis(500), exchange).await;
        let bytes = scrape(admin).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = server.cpu_ns()?;
        tokio::time::sleep(CPU_PHASE).await;
        let idle = server.cpu_ns()?;
        let mut ticks = tokio::time::interval(CPU_SCRAPE_EVERY);
        let (deadline, mut scrapes) = (tokio::time::Instant::now() + CPU_PHASE, 0u64);
        while tokio::time::Instant::now() < deadline {
            ticks.tick().await;
            scrape(admin).await?;
            scrapes += 1;
        }
        let busy = server.cpu_ns()?;
        let _ = server.stop().await;
        let ns = |n: u64| n as f64 / 1e9;
        Ok(ScrapeCpu { scrapes, bytes, idle_s: ns(idle - start), busy_s: ns(busy - idle) })
    }
}

/// What the direct measure found.
struct ScrapeCpu {
    /// Scrapes answered in the scraping phase.
    scrapes: u64,
    /// Size of one exposition.
    bytes: usize,
    /// Server CPU over the idle phase, in seconds.
    idle_s: f64,
    /// Server CPU over the scraping phase, in seconds.
    busy_s: f64,
}

impl ScrapeCpu {
    /// CPU seconds one scrape costs the server beyond what it spends idle.
    fn per_scrape_s(&self) -> f64 {
        (self.busy_s - self.idle_s).max(0.0) / self.scrapes.max(1) as f64
    }
}

impl Bench<'_> {
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
            Ok(_) => scrapes.ok.fetch_add(1, Ordering::Relaxed),
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
/// exposition and returns its size.
async fn scrape(admin: SocketAddr) -> Result<usize> {
    let mut stream = connect(admin).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n");
    bounded(OP_TIMEOUT, stream.write_all(request.as_bytes())).await?;
    let mut response = Vec::new();
    bounded(OP_TIMEOUT, stream.read_to_end(&mut response)).await?;
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") || !text.ends_with("# EOF\n") {
        bail!("not a whole exposition: {:?}", text.chars().take(120).collect::<String>());
    }
    Ok(response.len())
}
