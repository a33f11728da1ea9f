//! A plugin's stdout and stderr, turned into host log lines. The plugin name and
//! connection id come from the instance's span, given as each line's parent (entering
//! the span at every poll of the guest would cost every poll).
//! Lines are cut at [`MAX_LINE`] bytes (the kept part is logged at once, marked as cut;
//! the rest of the line, up to its newline, is dropped) so a plugin that prints without
//! newlines costs the host one bounded buffer and one log line, and at most [`LogLimiter::OUTPUT_PER_SECOND`] lines per plugin and second are
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

/// Longest line kept; the rest of a longer line is dropped.
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
        LineLogger { out: self.clone(), line: Vec::new(), cutting: false }
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
    /// The current line passed [`MAX_LINE`]: its first part is logged, the rest dropped
    /// up to the next newline.
    cutting: bool,
}

impl LineLogger {
    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.cutting {
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.cutting = false;
                        data = &data[i + 1..];
                    }
                    None => return,
                }
                continue;
            }
            let room = MAX_LINE - self.line.len();
            match data.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    self.line.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    self.emit(false);
                }
                None => {
                    let take = data.len().min(room);
                    self.line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.line.len() == MAX_LINE {
                        self.emit(true);
                        self.cutting = true;
                    }
                }
            }
        }
    }

    fn emit(&mut self, cut: bool) {
        if let Some(suppressed) = self.out.limiter.allow() {
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end_matches('\r');
            let mark = if cut { format!(" [line cut at {MAX_LINE} bytes]") } else { String::new() };
            match self.out.channel {
                Channel::Stdout => tracing::info!(parent: &self.out.span, suppressed, "stdout: {text}{mark}"),
                Channel::Stderr => tracing::warn!(parent: &self.out.span, suppressed, "stderr: {text}{mark}"),
            }
        }
        self.line.clear();
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit(false);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn logger() -> LineLogger {
        let out = LogOutput::new(Channel::Stdout, Arc::new(LogLimiter::new(LogLimiter::OUTPUT_PER_SECOND)), tracing::Span::none());
        out.writer()
    }

    #[test]
    fn a_line_without_newline_costs_one_bounded_buffer() {
        let mut log = logger();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            log.push(&chunk);
            assert!(log.line.len() <= MAX_LINE);
        }
        assert!(log.cutting, "the rest of the line is being dropped");
        assert!(log.line.is_empty(), "the kept part was logged when it filled");
        log.push(b"tail\nnext");
        assert!(!log.cutting);
        assert_eq!(log.line, b"next", "the line after the cut one is kept whole");
    }

    #[test]
    fn short_lines_are_logged_whole() {
        let mut log = logger();
        log.push(b"one\ntwo");
        assert_eq!(log.line, b"two");
        log.push(b"\n");
        assert!(log.line.is_empty() && !log.cutting);
    }
}
