//! A plugin's stdout and stderr, turned into host log lines. The plugin name and
//! connection id come from the instance's span, given as each line's parent (entering
//! the span at every poll of the guest would cost every poll).
//! Lines are cut at [`MAX_LINE`] bytes so a plugin cannot make the host buffer without
//! bound, and at most [`LogLimiter::OUTPUT_PER_SECOND`] lines per plugin and second are
//! logged (the next one says how many were suppressed), so a plugin printing in a loop
//! cannot flood the log.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::util::log_limit::LogLimiter;

/// Longest line kept; the rest of a longer line is logged as a continuation.
pub const MAX_LINE: usize = 4096;

/// Which of the plugin's output streams this is.
#[derive(Clone, Copy, Debug)]
pub enum Channel {
    /// The plugin's stdout (logged at info).
    Stdout,
    /// The plugin's stderr (logged at warn: panics land here).
    Stderr,
}

/// A `StdoutStream` that writes into the host log.
#[derive(Clone)]
pub struct LogOutput {
    channel: Channel,
    limiter: Arc<LogLimiter>,
    span: tracing::Span,
}

impl LogOutput {
    /// The plugin's stdout or stderr, sharing the plugin's line allowance `limiter`,
    /// logged in `span`.
    pub fn new(channel: Channel, limiter: Arc<LogLimiter>, span: tracing::Span) -> Self {
        LogOutput { channel, limiter, span }
    }

    fn writer(&self) -> LineLogger {
        LineLogger { out: self.clone(), line: Vec::new() }
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }
}

/// Collects bytes into lines and logs each complete one.
struct LineLogger {
    out: LogOutput,
    line: Vec<u8>,
}

impl LineLogger {
    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = MAX_LINE - self.line.len();
            match data.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    self.line.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    self.emit();
                }
                None => {
                    let take = data.len().min(room);
                    self.line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.line.len() == MAX_LINE {
                        self.emit();
                    }
                }
            }
        }
    }

    fn emit(&mut self) {
        if let Some(suppressed) = self.out.limiter.allow() {
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end_matches('\r');
            match self.out.channel {
                Channel::Stdout => tracing::info!(parent: &self.out.span, suppressed, "stdout: {text}"),
                Channel::Stderr => tracing::warn!(parent: &self.out.span, suppressed, "stderr: {text}"),
            }
        }
        self.line.clear();
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}
