//! One connection's life: a fresh instance, the byte streams handed over, the outcome
//! logged, every byte the plugin wrote delivered, the connection closed, the `Store`
//! dropped. Nothing here can disturb another connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use crate::bindings::ConnectionInfo;
use crate::closer::Closer;
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
    let span = tracing::info_span!("conn", plugin = %plugin.name, id = info.id, peer = %info.peer);
    async move {
        let outcome = run(rt, plugin, info, reader, writer, closer).await;
        match &outcome {
            Outcome::Ok => tracing::debug!("connection finished"),
            Outcome::Err(msg) => tracing::info!(error = %msg, "plugin returned an error"),
            Outcome::Trap(msg) => tracing::warn!("plugin trapped: {msg}"),
            Outcome::Closed(reason) => tracing::info!(%reason, "connection closed by the host"),
            Outcome::Failed(msg) => tracing::error!("cannot start the plugin: {msg}"),
        }
        outcome
    }
    .instrument(span)
    .await
}

async fn run<R, W>(rt: &Arc<Runtime>, plugin: &Arc<Plugin>, info: ConnectionInfo, reader: R, writer: W, closer: Closer) -> Outcome
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Some(exports) = plugin.stream_exports() else {
        return Outcome::Failed(format!("{} does not export a stream handler", plugin.name));
    };
    let slot = rt.instance_slot().await;
    let mut store = match rt.new_store(&plugin.grants, info.peer.clone(), closer.clone()) {
        Ok(store) => store,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let (output, leftover) = WriteStream::new(writer, closer.clone());
    let input: DynInputStream = Box::new(ReadStream::new(reader, closer.clone()));
    let output: DynOutputStream = Box::new(output);

    let outcome = {
        let call = async {
            let table = &mut store.data_mut().table;
            let input = table.push(input)?;
            let output = table.push(output)?;
            let instance = plugin.instance_pre().instantiate_async(&mut store).await?;
            let guest = exports.load(&mut store, &instance)?;
            guest.call_handle_connection(&mut store, &info, input, output).await
        };
        let overdue = async {
            closer.closed().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        };
        tokio::select! {
            result = call => match result {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(msg)) => Outcome::Err(msg),
                Err(e) => match closer.reason() {
                    Some(reason) => Outcome::Closed(reason),
                    None => Outcome::Trap(format!("{e:?}")),
                },
            },
            () = overdue => Outcome::Closed(closer.reason().unwrap_or_default()),
        }
    };
    // Dropping the store drops the instance and its streams; the output stream leaves
    // what it had not sent in `leftover`.
    drop(store);
    drop(slot);
    let leftover = leftover.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(leftover) = leftover {
        let pending = leftover.pending.len();
        match tokio::time::timeout(LINGER, leftover.finish()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(pending, "could not deliver the last bytes: {e}"),
            Err(_) => tracing::info!(pending, "peer did not take the last bytes within {LINGER:?}"),
        }
    }
    outcome
}
