//! The chat load: clients joined to one room, each with a reader task, and the fan-out
//! rounds the `fanout` scenario times.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::load::{Errors, OP_TIMEOUT, bounded, connect};

/// Connected chat clients, each with a reader task that counts `Client joined` notices
/// and reports when a `fanout-R` line arrives.
pub struct ChatClients {
    writers: Vec<OwnedWriteHalf>,
    readers: JoinSet<()>,
    joins: Arc<AtomicU64>,
    arrivals: mpsc::UnboundedReceiver<(u32, Instant)>,
    arrivals_tx: mpsc::UnboundedSender<(u32, Instant)>,
}

impl ChatClients {
    /// Connects `n` clients one after another, each waiting for its welcome line, so that
    /// exactly n(n-1)/2 join notices are due. Failed clients are counted, not fatal.
    pub async fn connect(addr: SocketAddr, n: usize) -> (ChatClients, Errors) {
        Self::connect_to(&[addr], n).await
    }

    /// As [`ChatClients::connect`], the clients taking turns between `addrs` (the hosts of
    /// one chat).
    pub async fn connect_to(addrs: &[SocketAddr], n: usize) -> (ChatClients, Errors) {
        let (arrivals_tx, arrivals) = mpsc::unbounded_channel();
        let mut clients = ChatClients {
            writers: Vec::with_capacity(n),
            readers: JoinSet::new(),
            joins: Arc::new(AtomicU64::new(0)),
            arrivals,
            arrivals_tx,
        };
        let mut errors = Errors::default();
        for i in 0..n {
            if let Err(e) = clients.join(addrs[i % addrs.len()]).await {
                errors.record(&e);
            }
        }
        (clients, errors)
    }

    /// One more client: connect, start its reader, wait for the welcome line.
    async fn join(&mut self, addr: SocketAddr) -> Result<()> {
        let (rd, wr) = connect(addr).await?.into_split();
        let (welcomed, welcome) = oneshot::channel();
        let (joins, arrivals) = (self.joins.clone(), self.arrivals_tx.clone());
        self.readers.spawn(async move {
            let mut lines = BufReader::with_capacity(64 << 10, rd);
            let mut line = Vec::new();
            let mut welcomed = Some(welcomed);
            while matches!(lines.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                if let Some(tx) = welcomed.take() {
                    let _ = tx.send(line.starts_with(b"You're connected to ").then_some(()).ok_or_else(|| line.clone()));
                } else if line.starts_with(b"Client joined ") {
                    joins.fetch_add(1, Ordering::Relaxed);
                } else if let Some(round) = fanout_round(&line) {
                    let _ = arrivals.send((round, Instant::now()));
                }
                line.clear();
            }
        });
        match bounded(OP_TIMEOUT, welcome).await? {
            Ok(()) => {
                self.writers.push(wr);
                Ok(())
            }
            Err(line) => bail!("expected a welcome line, got {:?}", String::from_utf8_lossy(&line)),
        }
    }

    /// Connected clients.
    pub fn len(&self) -> usize {
        self.writers.len()
    }

    /// Waits (at most `limit`) until `expected` join notices have arrived in all; returns
    /// how many did.
    pub async fn settle(&self, expected: u64, limit: Duration) -> u64 {
        let end = Instant::now() + limit;
        while self.joins.load(Ordering::Relaxed) < expected && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.joins.load(Ordering::Relaxed)
    }

    /// Round `round`: one client (rotating) sends `fanout-R`; returns the time until every
    /// other client has the relayed line.
    pub async fn round(&mut self, round: u32) -> Result<Duration> {
        let n = self.writers.len();
        let sender = (round as usize * 7919) % n;
        while self.arrivals.try_recv().is_ok() {} // late arrivals of earlier rounds
        let start = Instant::now();
        bounded(OP_TIMEOUT, self.writers[sender].write_all(format!("fanout-{round}\n").as_bytes())).await?;
        let end = tokio::time::Instant::from_std(start + OP_TIMEOUT);
        let (mut seen, mut last) = (0, start);
        while seen < n - 1 {
            match tokio::time::timeout_at(end, self.arrivals.recv()).await {
                Ok(Some((r, at))) if r == round => {
                    seen += 1;
                    last = last.max(at);
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("all readers ended"),
                Err(_) => bail!("round {round}: {seen} of {} clients got the line within {OP_TIMEOUT:?}", n - 1),
            }
        }
        Ok(last - start)
    }
}

/// R in a relayed `[WHO] fanout-R\r\n` line.
fn fanout_round(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix('[')?.split_once("] fanout-")?.1;
    rest.trim_end().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_fanout_lines_give_their_round() {
        assert_eq!(fanout_round(b"[127.0.0.1:4000] fanout-17\r\n"), Some(17));
        assert_eq!(fanout_round(b"Client joined 127.0.0.1:4000\r\n"), None);
        assert_eq!(fanout_round(b"[x] hello\r\n"), None);
    }
}
