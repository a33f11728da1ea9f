//! fanout-hosts: the fan-out of `fanout` with the chat clients split over two switchboard
//! hosts on one redis-server (`serve --hub redis://…`), against one switchboard with the
//! in-process hub, in the same run. The bench starts its own redis-server (on a free
//! port, in its work folder, without persistence) and stops it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::chat::ChatClients;
use crate::cli::Scenario;
use crate::harness::{Bench, secs, stop_and_note};
use crate::process::{Server, ServerSpec};
use crate::report::{Goal, Report, Row, Unit, thousands};
use crate::scenarios::{fanout_rounds, latency_line};
use crate::stats::Latencies;

/// How long a host may take to say it is connected to Redis.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);
/// What a host logs once it is subscribed and its presence is in Redis.
const CONNECTED: &str = "hub backplane: connected to Redis";

/// A redis-server of the bench's own; killed when dropped.
struct RedisServer {
    _child: Child,
    port: u16,
}

impl RedisServer {
    async fn start(dir: &Path) -> Result<RedisServer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (Debian package redis-server)")?;
        let server = RedisServer { _child: child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.pong().await {
            if Instant::now() > deadline {
                bail!("redis-server on port {port} never answered PING");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    async fn pong(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)).await else { return false };
        let mut reply = [0; 7];
        s.write_all(b"PING\r\n").await.is_ok() && s.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Bench<'_> {
    /// fanout-hosts: one host in-process against two hosts on one Redis.
    pub async fn fanout_hosts(&self, report: &mut Report) -> Vec<Row> {
        let s = Scenario::FanoutHosts;
        let (n, rounds) = (self.config.chat_clients, self.config.rounds);
        let redis = match RedisServer::start(&self.work.join("redis")).await {
            Ok(redis) => redis,
            Err(e) => {
                report.note(format!("{}: {e:#}; not run", s.name()));
                return Vec::new();
            }
        };
        let one = self.fanout_hosts_on(report, "1 host", vec![self.launcher.switchboard("chat", &[])], n, rounds).await;
        let url = redis.url();
        let hub = ["--hub", url.as_str()];
        let specs = vec![self.launcher.switchboard("chat", &hub), self.launcher.switchboard("chat", &hub)];
        let two = self.fanout_hosts_on(report, "2 hosts", specs, n, rounds).await;
        report.note(format!(
            "{}: the baseline column is one switchboard (in-process hub) with all {} clients; switchboard is two on one \
             redis-server (--hub), {} clients each",
            s.name(),
            thousands(n as f64),
            thousands((n / 2) as f64)
        ));
        let others = thousands(n as f64 - 1.0);
        let get = |l: &Option<Latencies>, q| l.as_ref().and_then(|l| secs(l.percentile(q)));
        vec![
            Row::new(s.name(), format!("p50 until all {others} others have it"), Unit::Seconds, get(&one, 50.0), get(&two, 50.0))
                .against("1 host"),
            Row::new(s.name(), format!("p99 until all {others} others have it"), Unit::Seconds, get(&one, 99.0), get(&two, 99.0))
                .against("1 host")
                .goal(Goal::RatioAtMost(2.0)),
        ]
    }

    /// Starts `specs` (the hosts of one chat), splits `n` clients over them, times the
    /// rounds, stops them; failures become notes.
    async fn fanout_hosts_on(
        &self,
        report: &mut Report,
        label: &str,
        specs: Vec<ServerSpec>,
        n: usize,
        rounds: usize,
    ) -> Option<Latencies> {
        let tag = format!("{}/{label}", Scenario::FanoutHosts.name());
        let mut servers: Vec<Server> = Vec::new();
        let mut notes = Vec::new();
        let hosts = specs.len();
        for (i, spec) in specs.into_iter().enumerate() {
            match self.launcher.start(&format!("fanout-hosts-{hosts}-{i}"), spec).await {
                Ok(server) => servers.push(server),
                Err(e) => notes.push(format!("could not start: {e:#}")),
            }
        }
        let result = if servers.len() < hosts {
            Err(anyhow::anyhow!("{} of {hosts} hosts started", servers.len()))
        } else {
            self.fanout_hosts_measure(&servers, label, n, rounds, &mut notes).await
        };
        for server in servers {
            stop_and_note(server, false, 0, &mut notes).await;
        }
        let value = match result {
            Ok(latencies) => Some(latencies),
            Err(e) => {
                notes.push(format!("failed: {e:#}"));
                None
            }
        };
        for note in notes {
            report.note(format!("{tag}: {note}"));
        }
        value
    }

    async fn fanout_hosts_measure(
        &self,
        servers: &[Server],
        label: &str,
        n: usize,
        rounds: usize,
        notes: &mut Vec<String>,
    ) -> Result<Latencies> {
        if servers.len() > 1 {
            let deadline = Instant::now() + CONNECT_LIMIT;
            while !servers.iter().all(|s| s.log_text().contains(CONNECTED)) {
                if Instant::now() > deadline {
                    bail!("not every host logged {CONNECTED:?} within {CONNECT_LIMIT:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let (clients, errors) = ChatClients::connect_to(&addrs, n).await;
        let latencies = fanout_rounds(label, clients, errors, rounds, notes).await?;
        eprintln!("bench:     {label}: {}", latency_line(&latencies, n));
        Ok(latencies)
    }
}
