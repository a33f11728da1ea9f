//! One connection's life: a fresh instance, the byte streams handed over, the limits
//! watched, every byte the plugin wrote delivered, the connection closed, the `Store`
//! dropped, and how it ended reported. Nothing here can disturb another connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use crate::bindings::{ConnectionInfo, Transport};
use crate::closer::Closer;
use crate::limits::{self, Activity, LimitHit, Limits};
use crate::plugin::Plugin;
use crate::runtime::Runtime;
use crate::stream::{ReadStream, WriteStream};

/// How long a plugin may keep running after the host asked its connection to close.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long the host keeps trying to deliver what a plugin wrote after it returned.
pub const LINGER: Duration = Duration::from_secs(10);

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `handle-connection` returned `ok`.
    Ok,
    /// It returned `err(message)`.
    Err(String),
    /// It trapped (message includes the wasm backtrace).
    Trap(String),
    /// A limit ended it (the message says how).
    Limit(LimitHit, String),
    /// The host closed it (reason given) and the plugin did not finish in time.
    Closed(String),
    /// The host could not start the plugin.
    Failed(String),
}

/// Runs `plugin`'s stream handler over `reader`/`writer` until it finishes.
///
/// `closer` lets the host end the connection gracefully (shutdown, hub overflow).
pub async fn run_stream<R, W>(
    rt: &Arc<Runtime>,
    plugin: &Arc<Plugin>,
    info: ConnectionInfo,
    reader: R,
    writer: W,
    closer: Closer,
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
    let slot = rt.instance_slot().await;
    let mut store = match rt.new_store(&plugin.grants, &plugin.limits, &plugin.output, &span, info.peer.clone(), closer.clone()) {
        Ok(store) => store,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let activity = Activity::new();
    store.data_mut().activity = Some(activity.clone());
    let cpu = store.data().cpu.clone();
    let (output, leftover) = WriteStream::new(writer, closer.clone(), activity.clone());
    let input: DynInputStream = Box::new(ReadStream::new(reader, closer.clone(), activity.clone()));
    let output: DynOutputStream = Box::new(output);

    let mut watchdog_hit = None;
    let result = {
        let call = cpu.meter(async {
            let table = &mut store.data_mut().table;
            let input = table.push(input)?;
            let output = table.push(output)?;
            let instance = plugin.instance_pre().instantiate_async(&mut store).await?;
            let guest = exports.load(&mut store, &instance)?;
            guest.call_handle_connection(&mut store, &info, input, output).await
        });
        tokio::pin!(call);
        // A serial line is one long conversation: a quiet device is not a stalled client.
        let limits = match info.transport {
            Transport::Serial => Limits { idle_timeout: None, max_duration: None, ..plugin.limits },
            _ => plugin.limits,
        };
        let watchdog = limits::watchdog(&activity, &limits);
        tokio::pin!(watchdog);
        loop {
            tokio::select! {
                // The call first: it is what wakes this task almost every time.
                biased;
                result = &mut call => break Some(result),
                hit = &mut watchdog, if watchdog_hit.is_none() => {
                    watchdog_hit = Some(hit);
                    closer.close(hit.name());
                }
                () = overdue(&closer) => break None,
            }
        }
    };
    tracing::debug!(parent: &span, cpu = ?cpu.used(), bytes = activity.bytes(), "plugin finished");
    let limit = store.data().limit_hit.or(watchdog_hit);
    // A refused memory growth explains a trap; a plugin that coped with it did not fail.
    let memory_trap = store.data().memory.hit.then_some(LimitHit::Memory);
    let outcome = match result {
        Some(Ok(returned)) => match (limit, returned) {
            (Some(hit), _) => Outcome::Limit(hit, "the plugin ended after the host closed the connection".into()),
            (None, Ok(())) => Outcome::Ok,
            (None, Err(msg)) => Outcome::Err(msg),
        },
        Some(Err(e)) => match (limit.or(memory_trap), closer.reason()) {
            (Some(hit), _) => Outcome::Limit(hit, format!("{e:#}")),
            (None, Some(reason)) => Outcome::Closed(reason),
            (None, None) => Outcome::Trap(format!("{e:?}")),
        },
        None => match limit {
            Some(hit) => Outcome::Limit(hit, format!("the plugin did not end within {CLOSE_GRACE:?} and was stopped")),
            None => Outcome::Closed(closer.reason().unwrap_or_default()),
        },
    };
    // Dropping the store drops the instance and its streams; the output stream leaves
    // what it had not sent in `leftover`.
    let peak = store.data().memory.peak;
    limits::drop_store(store, peak).await;
    drop(slot);
    let leftover = leftover.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(leftover) = leftover {
        let pending = leftover.pending.len();
        match tokio::time::timeout(LINGER, leftover.finish()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(parent: &span, pending, "could not deliver the last bytes: {e}"),
            Err(_) => tracing::info!(parent: &span, pending, "peer did not take the last bytes within {LINGER:?}"),
        }
    }
    outcome
}

/// Resolves [`CLOSE_GRACE`] after the host asked the connection to close.
async fn overdue(closer: &Closer) {
    closer.closed().await;
    tokio::time::sleep(CLOSE_GRACE).await;
}
