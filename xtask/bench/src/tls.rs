//! tls: echo over TLS 1.3, switchboard's `tls:` listener against a plain tokio-rustls
//! echo (both on ring, both with the same certificate, made here with `openssl req`):
//! request/response over persistent TLS connections (rtt), full handshakes per second
//! (connect + handshake + one exchange + close), and bulk echo (stream's load over TLS).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cli::{BaselineKind, Scenario};
use crate::harness::{Bench, note_errors, progress, secs};
use crate::load::{self, Exchange, TlsClient};
use crate::report::{Goal, Report, Row, Unit, figure};
use crate::scenarios::{CONNRATE_WORKERS, MESSAGE, PREFIX, RTT_CONNS, STREAM_CONNS, STREAM_WRITE};

/// Runs `openssl ARGS`.
fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl").args(args).output().context("running openssl (Debian package openssl) to make the certificates")?;
    if !out.status.success() {
        bail!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A CA and a server certificate for localhost/127.0.0.1 in `dir`: (ca, cert, key).
fn certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (ca, ca_key, cert, key) = (path("tls-ca.pem"), path("tls-ca.key"), path("tls-server.pem"), path("tls-server.key"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];
    openssl(&[&["req", "-x509"][..], &ec, &["-keyout", &ca_key, "-out", &ca, "-subj", "/CN=bench-ca"]].concat())?;
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", &key, "-out", &cert, "-subj", "/CN=localhost", "-CA", &ca, "-CAkey", &ca_key],
            &["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        ]
        .concat(),
    )?;
    Ok((ca.into(), cert.into(), key.into()))
}

impl Bench<'_> {
    /// tls: TLS rtt (8 connections × 32 B), handshakes/s (8 workers) and bulk MB/s (4
    /// connections × 64 KiB writes, no prefix).
    pub async fn tls(&self, report: &mut Report) -> Result<Vec<Row>> {
        // In a folder of their own, as a deployment keeps them: the host follows the
        // certificate files' folder for rotation, and the servers' logs are written in
        // the work folder (each log line would wake the host's watcher).
        let dir = self.work.join("tls");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (ca, cert, key) = certificates(&dir)?;
        let client = TlsClient::new(&ca)?;
        let (cert_arg, key_arg) = (format!("--cert={}", cert.display()), format!("--key={}", key.display()));
        let specs = || {
            vec![
                self.launcher.tokio(BaselineKind::TlsEcho, &["--prefix=Echo=>", &cert_arg, &key_arg]),
                self.launcher.switchboard_tls("echo", &cert, &key, &[]),
            ]
        };
        let exchange = Exchange::new(PREFIX, MESSAGE);
        let rtt = self
            .closed_loop_rounds(report, Scenario::Tls, specs(), "msgs/s", async |addr, slice| {
                load::tls_rtt(addr, client.clone(), RTT_CONNS, slice, exchange.clone()).await
            })
            .await;
        let handshakes = self
            .closed_loop_rounds(report, Scenario::Tls, specs(), "handshakes/s", async |addr, slice| {
                load::tls_handshakes(addr, client.clone(), CONNRATE_WORKERS, slice, exchange.clone()).await
            })
            .await;
        let bulk_specs = vec![
            self.launcher.tokio(BaselineKind::TlsEcho, &["--prefix=", &cert_arg, &key_arg]),
            self.launcher.switchboard_tls("echo", &cert, &key, &["--set", "echo.PREFIX="]),
        ];
        let bulk = self
            .measure_rounds(
                report,
                Scenario::Tls,
                bulk_specs,
                async |server, slice| load::tls_stream_echo(server.addr, client.clone(), STREAM_CONNS, STREAM_WRITE, slice).await,
                |server, outcome, notes| {
                    note_errors(notes, &outcome.errors);
                    if outcome.received == 0 {
                        bail!("nothing came back over TLS: {}", outcome.errors.describe());
                    }
                    progress(
                        server,
                        &format!("{} (sent {} MB)", figure(Unit::MegabytesPerSec, outcome.mb_per_sec()), outcome.sent / 1_000_000),
                    );
                    Ok(outcome)
                },
            )
            .await;
        let s = Scenario::Tls;
        Ok(vec![
            rtt.row(s, "TLS msgs/s, 8 conns × 32 B", Unit::Rate("msgs/s"), |o| Some(o.rate())).goal(Goal::RatioAtLeast(0.85)),
            rtt.row(s, "TLS p99 round trip", Unit::Seconds, |o| secs(o.latencies.percentile(99.0))),
            handshakes
                .row(s, "TLS handshakes/s, 8 workers (+ echo + close)", Unit::Rate("handshakes/s"), |o| Some(o.rate()))
                .goal(Goal::RatioAtLeast(0.85)),
            bulk.row(s, "TLS MB/s echoed, 4 conns × 64 KiB", Unit::MegabytesPerSec, |o| Some(o.mb_per_sec()))
                .goal(Goal::RatioAtLeast(0.85)),
        ])
    }
}
