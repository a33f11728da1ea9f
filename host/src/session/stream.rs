//! One byte-stream conversation's life: a fresh instance, the byte streams handed over,
//! the limits watched, every byte the plugin wrote delivered, the connection closed, the
//! instance dropped, and how it ended reported. Nothing here can disturb another
//! connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use super::outcome::{CallEnd, Circumstances, Outcome, classify, instantiation_error};
use super::watchdog::watchdog;
use crate::config::Limits;
use crate::guest::bindings::{ConnectionInfo, TlsSession};
use crate::guest::closer::Closer;
use crate::guest::stream::{LeftoverSlot, ReadStream, WriteStream};
use crate::guest::traffic::Activity;
use crate::instance::LimitHit;
use crate::instance::live::{Conversation, Live};
use crate::instance::meters::Meters;
use crate::instance::plugin::Plugin;
use crate::instance::runtime::Runtime;
use crate::util::histogram::Histogram;

/// How long a plugin may keep running after the host asked its connection to close.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long the host keeps trying to deliver what a plugin wrote after it returned.
pub const LINGER: Duration = Duration::from_secs(10);

/// Which time limits watch a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// A client's connection: the idle timeout and the maximum duration apply.
    Client,
    /// A serial line, one long conversation: a quiet device is not a stalled client, so
    /// neither applies (the CPU budget and memory limit still do).
    Line,
}

/// What a conversation is measured with.
pub(crate) struct Measures<'a> {
    /// Its traffic clock: the caller makes it (counting its listener's bytes, if it
    /// keeps them) and reads it afterwards (who ended the connection).
    pub(crate) activity: Arc<Activity>,
    /// Where the time it took to make its instance goes, if anywhere.
    pub(crate) instantiation: Option<&'a Histogram>,
    /// Its entry's window in the connection table, if it has one: shown the traffic and
    /// CPU once the instance exists.
    pub(crate) table: Option<&'a Meters>,
    /// How it arrived, as its access log line says: `tcp`, `tls` or `serial`.
    pub(crate) transport: &'static str,
    /// The TLS session it arrived over, for the plugin's `switchboard:plugin/tls`.
    pub(crate) tls: Option<TlsSession>,
}

impl Measures<'_> {
    /// Nothing kept beyond the conversation itself (a connection the host dials out).
    pub(crate) fn none() -> Self {
        Measures { activity: Activity::new(), instantiation: None, table: None, transport: "tcp", tls: None }
    }
}

/// Runs `plugin`'s stream handler over `reader`/`writer` until it finishes; `closer`
/// lets the host end the conversation gracefully (shutdown, hub overflow, a limit, the
/// admin API); `measures` says where its traffic, instantiation time and CPU are shown.
pub(crate) async fn run_stream<R, W>(
    rt: &Arc<Runtime>,
    plugin: &Arc<Plugin>,
    info: ConnectionInfo,
    (reader, writer): (R, W),
    closer: Closer,
    pace: Pace,
    measures: Measures<'_>,
) -> Outcome
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // Plugin output lines and this connection's own lines are logged in this span:
    // tagged with plugin, id and peer.
    let span = tracing::info_span!("conn", plugin = %plugin.name, id = info.id, peer = %info.peer);
    let Some(exports) = plugin.stream_exports() else {
        return Outcome::Failed(format!("{} does not export a stream handler", plugin.name));
    };
    let Measures { activity, instantiation, table, transport, tls } = measures;
    let starting = Instant::now();
    let with = Conversation { peer: info.peer.clone(), closer: closer.clone(), activity: Some(activity.clone()), tls };
    // Boxed, as the futures below that only run at the start or the end: a connection's
    // task holds the largest of its futures for as long as it lives.
    let mut live = match Box::pin(Live::start(rt, plugin, &span, with)).await {
        Ok(live) => live,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let cpu = live.cpu();
    if let Some(meters) = table {
        meters.attach(activity.clone(), cpu.clone());
    }
    let (output, leftover) = WriteStream::new(writer, closer.clone(), activity.clone());
    let input: DynInputStream = Box::new(ReadStream::new(reader, closer.clone(), activity.clone()));
    let output: DynOutputStream = Box::new(output);
    let call = cpu.meter(async {
        let store = &mut live.store;
        let table = &mut store.data_mut().table;
        let input = table.push(input)?;
        let output = table.push(output)?;
        let instance = plugin.instance_pre().instantiate_async(&mut *store).await.map_err(instantiation_error)?;
        if let Some(instantiation) = instantiation {
            instantiation.observe(starting.elapsed());
        }
        let guest = exports.load(&mut *store, &instance)?;
        guest.call_handle_connection(&mut *store, &info, input, output).await
    });
    let limits = match pace {
        Pace::Client => plugin.limits,
        Pace::Line => Limits { idle_timeout: None, max_duration: None, ..plugin.limits },
    };
    let (end, watchdog_hit) = drive(call, &activity, &limits, &closer).await;
    tracing::debug!(parent: &span, cpu = ?cpu.used(), host_cpu = ?cpu.host_used(), bytes = activity.bytes(), "plugin finished");
    let why = Circumstances { limit: live.limit_hit().or(watchdog_hit), memory_refused: live.memory_refused(), closed: closer.reason() };
    let outcome = match classify(end, why) {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(msg)) => Outcome::Err(msg),
        Err(outcome) => outcome,
    };
    // Dropping the instance drops its streams; the output stream leaves what it had not
    // sent in `leftover`.
    Box::pin(live.finish()).await;
    Box::pin(deliver_leftover(leftover, &span)).await;
    access_log(&span, plugin, &activity, &outcome, transport);
    outcome
}

/// The access log: one line per conversation at `info` (like xinetd's
/// `log_on_success`), in the connection's span (plugin, id, peer). Its target is
/// `switchboard::access`, so `RUST_LOG=info,switchboard::access=off` turns it off.
fn access_log(span: &tracing::Span, plugin: &Plugin, activity: &Activity, outcome: &Outcome, transport: &str) {
    tracing::info!(
        target: "switchboard::access",
        parent: span,
        version = %plugin.info.version,
        transport = %transport,
        duration_ms = activity.started().elapsed().as_millis() as u64,
        bytes_in = activity.bytes_in(),
        bytes_out = activity.bytes_out(),
        outcome = %outcome.kind(),
        "closed"
    );
}

/// Runs the call while the watchdog watches; a watchdog hit asks the plugin to close,
/// and a plugin still running [`CLOSE_GRACE`] after any close request is given up on.
async fn drive<T>(
    call: impl Future<Output = wasmtime::Result<T>>,
    activity: &Activity,
    limits: &Limits,
    closer: &Closer,
) -> (CallEnd<T>, Option<LimitHit>) {
    tokio::pin!(call);
    let watchdog = watchdog(activity, limits);
    tokio::pin!(watchdog);
    let mut watchdog_hit = None;
    loop {
        tokio::select! {
            // The call first: it is what wakes this task almost every time.
            biased;
            result = &mut call => {
                let end = match result {
                    Ok(value) => CallEnd::Returned(value),
                    Err(e) => CallEnd::Failed(e),
                };
                return (end, watchdog_hit);
            }
            hit = &mut watchdog, if watchdog_hit.is_none() => {
                watchdog_hit = Some(hit);
                closer.close(hit.name());
            }
            () = overdue(closer) => {
                return (CallEnd::Overdue(format!("the plugin did not end within {CLOSE_GRACE:?} and was stopped")), watchdog_hit);
            }
        }
    }
}

/// Sends what the plugin wrote and the socket had not taken yet, then closes.
async fn deliver_leftover<W: AsyncWrite + Unpin + Send + 'static>(slot: LeftoverSlot<W>, span: &tracing::Span) {
    let Some(leftover) = slot.lock().take() else { return };
    let pending = leftover.pending.len();
    match tokio::time::timeout(LINGER, leftover.finish()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(parent: span, pending, "could not deliver the last bytes: {e}"),
        Err(_) => tracing::info!(parent: span, pending, "peer did not take the last bytes within {LINGER:?}"),
    }
}

/// Resolves [`CLOSE_GRACE`] after the host asked the connection to close.
async fn overdue(closer: &Closer) {
    closer.closed().await;
    tokio::time::sleep(CLOSE_GRACE).await;
}
