//! reload: `serve --plugins DIR`; a new version is renamed over `svc.wasm`, and new
//! connections are polled until it answers. switchboard alone: no baseline server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Scenario;
use crate::harness::{Bench, Sides, note_errors, progress, secs};
use crate::load::{Errors, Latencies, bounded, connect};
use crate::process::Server;
use crate::report::{Goal, Report, Row, Unit, figure};

/// The plugin name (file stem) the reload scenario swaps.
const SVC: &str = "svc";
/// Between polls of a new connection while waiting for the new version.
const RELOAD_POLL: Duration = Duration::from_millis(5);
/// Longest wait for a new version to answer.
const RELOAD_LIMIT: Duration = Duration::from_secs(10);
/// Pause after a swap was seen, before the next one.
const SWAP_PAUSE: Duration = Duration::from_millis(50);
/// Longest wait for one poll's answer.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// reload goal: median seconds from the rename until the new version answers.
const RELOAD_GOAL: f64 = 0.25;
/// The chat plugin's first line.
const CHAT_WELCOME: &[u8] = b"You're connected to the switchboard chat server\r\n";

impl Bench<'_> {
    /// reload: a rename into the plugins folder until the first new connection served by the
    /// new version, `--swaps` times, alternating chat and echo.
    pub async fn reload(&self, report: &mut Report) -> Vec<Row> {
        let dir = self.work.join("reload-plugins");
        let (echo, chat) = (self.launcher.plugin_path("echo"), self.launcher.plugin_path("chat"));
        let sides = match prepare_folder(&dir, &echo) {
            Ok(()) => {
                let swaps = self.config.swaps;
                let spec = self.launcher.switchboard_folder(&dir, 1);
                self.measure_all(report, Scenario::Reload, vec![spec], async |server, notes| {
                    reload_run(server, &dir, [&chat, &echo], swaps, notes).await
                })
                .await
            }
            Err(e) => {
                report.note(format!("reload: could not run: {e:#}"));
                Sides::default()
            }
        };
        let n = self.config.swaps;
        let s = Scenario::Reload;
        vec![
            sides
                .row(s, format!("rename → new version answers, median of {n}"), Unit::Seconds, |l| secs(l.percentile(50.0)))
                .goal(Goal::AtMost(RELOAD_GOAL)),
            sides.row(s, format!("rename → new version answers, max of {n}"), Unit::Seconds, |l| secs(l.percentile(100.0))),
        ]
    }
}

/// An empty plugins folder with `svc.toml` (one listener on any port) and `svc.wasm` = echo.
fn prepare_folder(dir: &Path, echo: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(format!("{SVC}.toml")), "listen = [\"127.0.0.1:0\"]\n").context("writing the sidecar")?;
    std::fs::copy(echo, dir.join(format!("{SVC}.wasm"))).with_context(|| format!("copying {}", echo.display()))?;
    Ok(())
}

/// Which plugin answers a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Echo,
    Chat,
}

/// The reload swaps against one server: `sources[i % 2]` is renamed in on swap `i`.
async fn reload_run(server: &Server, dir: &Path, sources: [&PathBuf; 2], swaps: usize, notes: &mut Vec<String>) -> Result<Latencies> {
    let addr = server.listener(SVC).with_context(|| format!("no `listening {SVC} ...` line"))?;
    match who_answers(addr).await {
        Ok(Version::Echo) => {}
        other => bail!("before any swap, expected echo to answer, got {other:?}"),
    }
    let (mut times, mut errors, mut failed_polls) = (Vec::new(), Errors::default(), Errors::default());
    for i in 0..swaps {
        let (src, want) = if i % 2 == 0 { (sources[0], Version::Chat) } else { (sources[1], Version::Echo) };
        match swap(dir, src, want, addr, &mut failed_polls).await {
            Ok(took) => {
                eprintln!(
                    "bench: [reload] swap {}: {want:?} answered {} after the rename",
                    i + 1,
                    figure(Unit::Seconds, took.as_secs_f64())
                );
                times.push(took);
            }
            Err(e) => errors.record(&e),
        }
        tokio::time::sleep(SWAP_PAUSE).await;
    }
    note_errors(notes, &errors);
    if failed_polls.count > 0 {
        notes.push(format!("polls that got neither version (a gap in service?): {}", failed_polls.describe()));
    }
    let latencies = Latencies::new(times);
    if latencies.len() == 0 {
        bail!("no swap was seen: {}", errors.describe());
    }
    let p = |q| figure(Unit::Seconds, secs(latencies.percentile(q)).unwrap_or(0.0));
    progress(server, &format!("{} swaps: median {}, max {}, {} failed polls", latencies.len(), p(50.0), p(100.0), failed_polls.count));
    Ok(latencies)
}

/// Copies `src` to a temporary name in `dir`, renames it over `svc.wasm`, then polls new
/// connections until `want` answers: the time from the rename.
async fn swap(dir: &Path, src: &Path, want: Version, addr: SocketAddr, failed: &mut Errors) -> Result<Duration> {
    let tmp = dir.join(format!(".{SVC}.tmp"));
    std::fs::copy(src, &tmp).with_context(|| format!("copying {} to {}", src.display(), tmp.display()))?;
    std::fs::rename(&tmp, dir.join(format!("{SVC}.wasm"))).context("renaming over svc.wasm")?;
    let start = Instant::now();
    loop {
        match who_answers(addr).await {
            Ok(v) if v == want => return Ok(start.elapsed()),
            Ok(_) => {}
            Err(e) => failed.record(&e),
        }
        if start.elapsed() > RELOAD_LIMIT {
            bail!("{want:?} did not answer within {RELOAD_LIMIT:?} of the rename");
        }
        tokio::time::sleep(RELOAD_POLL).await;
    }
}

/// Connects, sends `ping`, and tells by the first 10 bytes which plugin answered: echo
/// replies `Echo=>ping`, chat greets first.
async fn who_answers(addr: SocketAddr) -> Result<Version> {
    let mut stream = connect(addr).await?;
    let mut got = Vec::new();
    bounded(POLL_TIMEOUT, async {
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 256];
        while got.len() < 10 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                bail!("closed after {:?}", String::from_utf8_lossy(&got));
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(())
    })
    .await?;
    identify(&got).with_context(|| format!("unexpected reply {:?}", String::from_utf8_lossy(&got)))
}

/// The plugin that sends `got` first on a connection that sent `ping`.
fn identify(got: &[u8]) -> Option<Version> {
    if got.starts_with(b"Echo=>ping") {
        Some(Version::Echo)
    } else if CHAT_WELCOME.starts_with(&got[..got.len().min(CHAT_WELCOME.len())]) {
        Some(Version::Chat)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_tell_the_versions_apart() {
        assert_eq!(identify(b"Echo=>ping"), Some(Version::Echo));
        assert_eq!(identify(b"You're connected to the switchboard chat server\r\nClient joined"), Some(Version::Chat));
        assert_eq!(identify(b"You're con"), Some(Version::Chat));
        assert_eq!(identify(b"Echo=>pong"), None);
    }
}
