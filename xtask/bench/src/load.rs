//! Load generators, and the helpers they share: connecting, one request/response
//! exchange. Every loop is bounded by a deadline or a count, every network wait by a
//! timeout. What they measure is kept in `stats`; the chat clients live in `chat`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::rounds::Merge;

pub use crate::stats::{Errors, Latencies, LoopOutcome};
pub use tls::{TlsClient, tls_handshakes, tls_rtt, tls_stream_echo};

mod tls;

/// Longest wait for a connection to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for any single read, write or exchange.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed attempt, a closed-loop worker pauses this long before the next.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Read buffer for bulk transfers.
const BULK_BUF: usize = 256 << 10;

/// Connects to `addr` with TCP_NODELAY, within [`CONNECT_TIMEOUT`].
pub async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = bounded(CONNECT_TIMEOUT, TcpStream::connect(addr)).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs `f` with a time limit, turning a timeout into an error.
pub async fn bounded<T, E: Into<anyhow::Error>>(limit: Duration, f: impl Future<Output = Result<T, E>>) -> Result<T> {
    tokio::time::timeout(limit, f).await.map_err(|_| anyhow!("timed out after {limit:?}"))?.map_err(Into::into)
}

/// A request and exactly the reply it must get (`prefix` + request).
#[derive(Debug, Clone)]
pub struct Exchange {
    request: Arc<[u8]>,
    reply: Arc<[u8]>,
}

impl Exchange {
    /// A `size`-byte printable request whose reply is `prefix` + the request.
    pub fn new(prefix: &[u8], size: usize) -> Exchange {
        let request: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let reply = [prefix, &request].concat();
        Exchange { request: request.into(), reply: reply.into() }
    }

    /// Sends the request, reads exactly the reply's length and checks it; returns the
    /// round-trip time.
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: &mut S) -> Result<Duration> {
        let start = Instant::now();
        let mut buf = [0u8; 256];
        let got = buf.get_mut(..self.reply.len()).context("reply longer than 256 bytes")?;
        bounded(OP_TIMEOUT, async {
            stream.write_all(&self.request).await?;
            stream.read_exact(got).await
        })
        .await?;
        if *got != *self.reply {
            bail!("expected {:?}, got {:?}", String::from_utf8_lossy(&self.reply), String::from_utf8_lossy(got));
        }
        Ok(start.elapsed())
    }
}

/// Runs `workers` concurrent workers until `duration` has passed. Each worker gets a
/// state from `init` (e.g. a connection), then repeats `step`, which returns the state
/// and the operation's latency. A failed step drops the state; the next round makes a
/// fresh one.
pub async fn closed_loop<S, I, IF, F, SF>(workers: usize, duration: Duration, init: I, step: F) -> LoopOutcome
where
    S: Send + 'static,
    I: Fn() -> IF + Clone + Send + 'static,
    IF: Future<Output = Result<S>> + Send,
    F: Fn(S) -> SF + Clone + Send + 'static,
    SF: Future<Output = Result<(S, Duration)>> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (init, step) = (init.clone(), step.clone());
        set.spawn(async move {
            let (mut samples, mut errors, mut state) = (Vec::new(), Errors::default(), None);
            while Instant::now() < deadline {
                let s = match state.take() {
                    Some(s) => s,
                    None => match bounded(OP_TIMEOUT, init()).await {
                        Ok(s) => s,
                        Err(e) => {
                            errors.record(&e);
                            tokio::time::sleep(RETRY_PAUSE).await;
                            continue;
                        }
                    },
                };
                match bounded(OP_TIMEOUT, step(s)).await {
                    Ok((s, latency)) => {
                        samples.push(latency);
                        state = Some(s);
                    }
                    Err(e) => errors.record(&e),
                }
            }
            (samples, errors)
        });
    }
    let (mut all, mut errors) = (Vec::new(), Errors::default());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((samples, errs)) => {
                all.extend(samples);
                errors.merge(errs);
            }
            Err(e) => errors.record(&anyhow!("worker failed: {e}")),
        }
    }
    LoopOutcome { ops: all.len() as u64, elapsed: start.elapsed(), latencies: Latencies::new(all), errors }
}

/// Request/response over `conns` persistent connections for `duration`.
pub async fn rtt(addr: SocketAddr, conns: usize, duration: Duration, exchange: Exchange) -> LoopOutcome {
    closed_loop(
        conns,
        duration,
        move || connect(addr),
        move |mut stream| {
            let exchange = exchange.clone();
            async move {
                let latency = exchange.run(&mut stream).await?;
                Ok((stream, latency))
            }
        },
    )
    .await
}

/// `workers` workers doing connect + one exchange + close for `duration`; the latency
/// covers all three.
pub async fn connrate(addr: SocketAddr, workers: usize, duration: Duration, exchange: Exchange) -> LoopOutcome {
    closed_loop(
        workers,
        duration,
        || async { Ok(()) },
        move |()| {
            let exchange = exchange.clone();
            async move {
                let start = Instant::now();
                let mut stream = connect(addr).await?;
                exchange.run(&mut stream).await?;
                drop(stream);
                Ok(((), start.elapsed()))
            }
        },
    )
    .await
}

/// What a bulk echo run moved.
#[derive(Debug, Default)]
pub struct StreamOutcome {
    /// Bytes written by the clients.
    pub sent: u64,
    /// Bytes echoed back.
    pub received: u64,
    /// From start until the last connection saw its echo end.
    pub elapsed: Duration,
    /// Failed connections.
    pub errors: Errors,
}

impl Merge for StreamOutcome {
    fn merge(&mut self, other: StreamOutcome) {
        self.sent += other.sent;
        self.received += other.received;
        self.elapsed += other.elapsed;
        self.errors.merge(other.errors);
    }
}

impl StreamOutcome {
    /// Echoed MB/s (10^6 bytes).
    pub fn mb_per_sec(&self) -> f64 {
        self.received as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// `conns` connections each writing `write_size`-byte chunks for `duration` while reading
/// the echo concurrently; then each closes its sending side and reads until the server
/// closes (within `OP_TIMEOUT`).
pub async fn stream_echo(addr: SocketAddr, conns: usize, write_size: usize, duration: Duration) -> StreamOutcome {
    stream_echo_over(conns, write_size, duration, move || async move { Ok(connect(addr).await?.into_split()) }).await
}

/// [`stream_echo`] over the connections `open` makes, each as its read and write halves.
pub async fn stream_echo_over<O, OF, R, W>(conns: usize, write_size: usize, duration: Duration, open: O) -> StreamOutcome
where
    O: Fn() -> OF,
    OF: Future<Output = Result<(R, W)>> + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let chunk: Arc<[u8]> = (0..write_size).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let mut set = JoinSet::new();
    for _ in 0..conns {
        set.spawn(one_stream(open(), chunk.clone(), deadline));
    }
    let mut outcome = StreamOutcome::default();
    let mut last = start;
    while let Some(joined) = set.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok((sent, received, done)) => {
                outcome.sent += sent;
                outcome.received += received;
                last = last.max(done);
                if sent != received {
                    outcome.errors.record(&anyhow!("sent {sent} bytes, {received} came back"));
                }
            }
            Err(e) => outcome.errors.record(&e),
        }
    }
    outcome.elapsed = last - start;
    outcome
}

/// One bulk echo connection: (sent, received, when the echo ended).
async fn one_stream<R, W>(open: impl Future<Output = Result<(R, W)>>, chunk: Arc<[u8]>, deadline: Instant) -> Result<(u64, u64, Instant)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = open.await?;
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        while Instant::now() < deadline {
            bounded(OP_TIMEOUT, wr.write_all(&chunk)).await?;
            sent += chunk.len() as u64;
        }
        wr.shutdown().await?;
        anyhow::Ok(sent)
    });
    let mut buf = vec![0u8; BULK_BUF];
    let mut received = 0u64;
    let end = tokio::time::Instant::from_std(deadline + OP_TIMEOUT);
    loop {
        match tokio::time::timeout_at(end, rd.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => received += n as u64,
            Ok(Err(e)) => bail!("reading the echo: {e}"),
            Err(_) => bail!("the echo did not end within {OP_TIMEOUT:?} of the last write"),
        }
    }
    let done = Instant::now();
    let sent = writer.await??;
    Ok((sent, received, done))
}

/// Opens `n` connections, at most `concurrency` connecting at once.
pub async fn open_many(addr: SocketAddr, n: usize, concurrency: usize) -> (Vec<TcpStream>, Errors) {
    open_sending(addr, n, concurrency, Arc::from(&[][..])).await
}

/// Opens `n` connections to `addr`, at most `concurrency` connects at once, and sends
/// `name\n` (a getfile request) on each; returns the open connections, none of them read
/// (the downloads stall once the socket buffers are full), and the failures.
pub async fn stall(addr: SocketAddr, n: usize, name: &str, concurrency: usize) -> (Vec<TcpStream>, Errors) {
    open_sending(addr, n, concurrency, format!("{name}\n").into_bytes().into()).await
}

/// Opens `n` connections, at most `concurrency` connecting at once, and writes `first`
/// on each (nothing when it is empty).
async fn open_sending(addr: SocketAddr, n: usize, concurrency: usize, first: Arc<[u8]>) -> (Vec<TcpStream>, Errors) {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("semaphore never closed");
        let first = first.clone();
        set.spawn(async move {
            let r = async {
                let mut stream = connect(addr).await?;
                if !first.is_empty() {
                    bounded(OP_TIMEOUT, stream.write_all(&first)).await?;
                }
                Ok::<_, anyhow::Error>(stream)
            }
            .await;
            drop(permit);
            r
        });
    }
    let (mut conns, mut errors) = (Vec::with_capacity(n), Errors::default());
    while let Some(joined) = set.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(stream) => conns.push(stream),
            Err(e) => errors.record(&e),
        }
    }
    (conns, errors)
}

/// Runs one exchange on every connection, at most `concurrency` at once; returns the
/// connections that answered correctly (still open) and the failures.
pub async fn answer_all(conns: Vec<TcpStream>, exchange: &Exchange, concurrency: usize) -> (Vec<TcpStream>, Errors) {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for mut stream in conns {
        let permit = gate.clone().acquire_owned().await.expect("semaphore never closed");
        let exchange = exchange.clone();
        set.spawn(async move {
            let r = exchange.run(&mut stream).await;
            drop(permit);
            r.map(|_| stream)
        });
    }
    let (mut answered, mut errors) = (Vec::new(), Errors::default());
    while let Some(joined) = set.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(stream) => answered.push(stream),
            Err(e) => errors.record(&e),
        }
    }
    (answered, errors)
}

/// Downloads `name` with getfile's protocol; returns (bytes, time from connect to EOF).
pub async fn download(addr: SocketAddr, name: &str) -> Result<(u64, Duration)> {
    let start = Instant::now();
    let mut stream = connect(addr).await?;
    bounded(OP_TIMEOUT, stream.write_all(format!("{name}\n").as_bytes())).await?;
    let mut buf = vec![0u8; BULK_BUF];
    let mut got = 0u64;
    loop {
        match bounded(OP_TIMEOUT, stream.read(&mut buf)).await? {
            0 => return Ok((got, start.elapsed())),
            n => got += n as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.percentile(50.0), Some(Duration::from_millis(50)));
        assert_eq!(l.percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(l.percentile(100.0), Some(Duration::from_millis(100)));
        assert_eq!(Latencies::default().percentile(50.0), None);
    }

    #[test]
    fn exchanges_expect_prefix_and_request() {
        let e = Exchange::new(b"Echo=>", 32);
        assert_eq!(e.request.len(), 32);
        assert_eq!(&e.reply[..6], b"Echo=>");
        assert_eq!(&e.reply[6..], &e.request[..]);
    }
}
