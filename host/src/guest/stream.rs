//! wasi `input-stream` / `output-stream` backed directly by a connection's halves.
//!
//! Written for the two things wasmtime's generic pipes get wrong for a server:
//! - **Nothing written is lost.** When the guest drops its output stream (or the instance
//!   goes away), unsent bytes and the writer move to a [`Leftover`] slot; the session
//!   sends them before closing the connection.
//! - **No task per read.** Reads go from the socket into a buffer let go once the guest
//!   took all of it (an idle connection holds none), writes straight to the socket; only
//!   what it does not take at once is kept, at most [`WRITE_CAPACITY`] bytes (backpressure).
//!
//! Both streams also end when the connection's [`Closer`] fires; when it drains, only
//! the input ends (with [`DRAINING`]), once nothing more is in flight.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::closer::{Closer, DRAINING};
use super::traffic::Activity;

/// First read size; doubled (up to [`MAX_READ`]) whenever a read fills it.
const FIRST_READ: usize = 4 * 1024;
/// Largest single read from the connection.
const MAX_READ: usize = 64 * 1024;
/// Most bytes the output stream holds that the peer has not taken yet.
pub const WRITE_CAPACITY: usize = 64 * 1024;

/// Whatever the output stream had not sent when the guest let go of it.
pub struct Leftover<W> {
    /// The connection's write half.
    pub writer: W,
    /// Bytes accepted from the guest and not yet sent.
    pub pending: BytesMut,
}

/// Where a dropped [`WriteStream`] leaves its [`Leftover`].
pub type LeftoverSlot<W> = Arc<Mutex<Option<Leftover<W>>>>;

impl<W: AsyncWrite + Unpin> Leftover<W> {
    /// Sends the pending bytes, then shuts the write side down.
    pub async fn finish(mut self) -> io::Result<()> {
        self.writer.write_all(&self.pending).await?;
        self.writer.shutdown().await
    }
}

enum ReadState {
    Open,
    Ended,
    Failed(io::Error),
}

/// The input stream: the peer's bytes.
pub struct ReadStream<R> {
    reader: R,
    buf: BytesMut,
    next_read: usize,
    state: ReadState,
    closer: Closer,
    activity: Arc<Activity>,
}

impl<R: AsyncRead + Unpin + Send + 'static> ReadStream<R> {
    /// Wraps the connection's read half; reads stamp `activity`.
    pub fn new(reader: R, closer: Closer, activity: Arc<Activity>) -> Self {
        ReadStream { reader, buf: BytesMut::new(), next_read: FIRST_READ, state: ReadState::Open, closer, activity }
    }

    /// Reads once from the connection into the buffer (which must be empty).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.buf.reserve(self.next_read);
        let spare = &mut self.buf.spare_capacity_mut()[..self.next_read];
        let mut rb = ReadBuf::uninit(spare);
        match Pin::new(&mut self.reader).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    self.state = ReadState::Ended;
                    self.activity.peer_ended();
                } else {
                    // SAFETY: `ReadBuf` guarantees its first `n` bytes were initialised.
                    unsafe { self.buf.set_len(self.buf.len() + n) };
                    self.activity.received(n);
                    if n == self.next_read {
                        self.next_read = (self.next_read * 2).min(MAX_READ);
                    }
                }
                Poll::Ready(())
            }
            Poll::Ready(Err(e)) => {
                self.state = ReadState::Failed(e);
                self.activity.peer_ended();
                Poll::Ready(())
            }
        }
    }

    fn settled(&self) -> bool {
        !self.buf.is_empty() || !matches!(self.state, ReadState::Open) || self.closer.is_closed() || self.closer.is_draining()
    }
}

#[wasmtime_wasi::async_trait]
impl<R: AsyncRead + Unpin + Send + 'static> Pollable for ReadStream<R> {
    async fn ready(&mut self) {
        if self.settled() {
            return;
        }
        let closer = self.closer.clone();
        tokio::select! {
            () = closer.closed() => {}
            () = closer.draining() => {}
            () = std::future::poll_fn(|cx| self.poll_fill(cx)) => {}
        }
    }
}

#[wasmtime_wasi::async_trait]
impl<R: AsyncRead + Unpin + Send + 'static> InputStream for ReadStream<R> {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.closer.is_closed() {
            return Err(StreamError::Closed);
        }
        if self.buf.is_empty() && matches!(self.state, ReadState::Open) && size > 0 {
            let _ = self.poll_fill(&mut Context::from_waker(Waker::noop()));
        }
        if !self.buf.is_empty() {
            let n = size.min(self.buf.len());
            let bytes = self.buf.split_to(n).freeze();
            if self.buf.is_empty() {
                // An idle connection holds no read buffer: the next read takes a new one.
                self.buf = BytesMut::new();
            }
            return Ok(bytes);
        }
        match std::mem::replace(&mut self.state, ReadState::Ended) {
            // Nothing is in flight any more: a drained input ends here.
            ReadState::Open if self.closer.is_draining() => Err(StreamError::LastOperationFailed(wasmtime::format_err!("{DRAINING}"))),
            ReadState::Open => {
                self.state = ReadState::Open;
                Ok(Bytes::new())
            }
            ReadState::Ended => Err(StreamError::Closed),
            ReadState::Failed(e) => Err(StreamError::LastOperationFailed(e.into())),
        }
    }
}

/// The output stream: our bytes to the peer.
pub struct WriteStream<W: AsyncWrite + Unpin + Send + 'static> {
    writer: Option<W>,
    pending: BytesMut,
    flushing: bool,
    failed: Option<io::Error>,
    broken: bool,
    closer: Closer,
    leftover: LeftoverSlot<W>,
    activity: Arc<Activity>,
}

impl<W: AsyncWrite + Unpin + Send + 'static> WriteStream<W> {
    /// Wraps the connection's write half; on drop, unsent bytes go to the returned slot.
    /// Bytes the peer takes stamp `activity`.
    pub fn new(writer: W, closer: Closer, activity: Arc<Activity>) -> (Self, LeftoverSlot<W>) {
        let leftover = Arc::new(Mutex::new(None));
        let stream = WriteStream {
            writer: Some(writer),
            pending: BytesMut::new(),
            flushing: false,
            failed: None,
            broken: false,
            closer,
            leftover: leftover.clone(),
            activity,
        };
        (stream, leftover)
    }

    /// Sends pending bytes (and flushes, if asked) until done or `Pending`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(writer) = self.writer.as_mut() else { return Poll::Ready(()) };
        let mut error = None;
        while !self.pending.is_empty() && !self.broken && error.is_none() {
            match Pin::new(&mut *writer).poll_write(cx, &self.pending) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => error = Some(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.pending.advance(n);
                    self.activity.sent(n);
                }
                Poll::Ready(Err(e)) => error = Some(e),
            }
        }
        if self.flushing && !self.broken && error.is_none() {
            match Pin::new(&mut *writer).poll_flush(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => error = Some(e),
            }
        }
        self.flushing = false;
        if let Some(e) = error {
            self.fail(e);
        }
        Poll::Ready(())
    }

    /// The connection refused a write: the peer is gone (reset, or closed its side).
    fn fail(&mut self, e: io::Error) {
        self.activity.peer_ended();
        self.failed = Some(e);
        self.broken = true;
        self.pending.clear();
    }

    fn try_drain(&mut self) {
        if !self.pending.is_empty() || self.flushing {
            let _ = self.poll_drain(&mut Context::from_waker(Waker::noop()));
        }
    }

    /// The error to report, if the stream cannot take writes.
    fn check(&mut self) -> StreamResult<()> {
        if let Some(e) = self.failed.take() {
            return Err(StreamError::LastOperationFailed(e.into()));
        }
        if self.broken || self.closer.is_closed() {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    /// What `check-write` reports: 0 until a flush has completed, as wasi streams say.
    /// The writer's own flush counts too: a TLS stream holds encrypted records the
    /// socket has not taken yet (a plain socket's flush completes at once).
    fn permit(&self) -> usize {
        if self.flushing { 0 } else { WRITE_CAPACITY - self.pending.len().min(WRITE_CAPACITY) }
    }
}

#[wasmtime_wasi::async_trait]
impl<W: AsyncWrite + Unpin + Send + 'static> Pollable for WriteStream<W> {
    async fn ready(&mut self) {
        if self.permit() > 0 || self.broken || self.closer.is_closed() {
            return;
        }
        let closer = self.closer.clone();
        tokio::select! {
            () = closer.closed() => {}
            () = std::future::poll_fn(|cx| self.poll_drain(cx)) => {}
        }
    }
}

#[wasmtime_wasi::async_trait]
impl<W: AsyncWrite + Unpin + Send + 'static> OutputStream for WriteStream<W> {
    fn write(&mut self, mut bytes: Bytes) -> StreamResult<()> {
        self.check()?;
        if bytes.len() > self.permit() {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write of {} bytes exceeds the {} permitted by check-write",
                bytes.len(),
                self.permit()
            )));
        }
        if self.pending.is_empty()
            && let Some(writer) = self.writer.as_mut()
        {
            // Straight to the connection; keep only what it does not take now. A failure
            // is reported by the next call, as wasi streams do.
            let mut cx = Context::from_waker(Waker::noop());
            while !bytes.is_empty() {
                match Pin::new(&mut *writer).poll_write(&mut cx, &bytes) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        bytes.advance(n);
                        self.activity.sent(n);
                    }
                    Poll::Ready(Ok(_)) => {
                        self.fail(io::ErrorKind::WriteZero.into());
                        return Ok(());
                    }
                    Poll::Ready(Err(e)) => {
                        self.fail(e);
                        return Ok(());
                    }
                    Poll::Pending => break,
                }
            }
        }
        self.pending.extend_from_slice(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.check()?;
        self.flushing = true;
        self.try_drain();
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.try_drain();
        self.check()?;
        Ok(self.permit())
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> Drop for WriteStream<W> {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            let pending = if self.broken { BytesMut::new() } else { std::mem::take(&mut self.pending) };
            *self.leftover.lock() = Some(Leftover { writer, pending });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_drained_input_delivers_what_is_in_flight_then_ends() {
        let (mut client, server) = tokio::io::duplex(64);
        let closer = Closer::new();
        let mut input = ReadStream::new(server, closer.clone(), Activity::new());
        client.write_all(b"last words").await.unwrap();
        closer.drain();
        input.ready().await;
        assert_eq!(&input.read(100).unwrap()[..], b"last words");
        match input.read(100) {
            Err(StreamError::LastOperationFailed(e)) => assert!(e.to_string().starts_with("draining:"), "{e}"),
            other => panic!("not drained: {other:?}"),
        }
        assert!(matches!(input.read(100), Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn reads_come_in_order_and_end_as_closed() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut input = ReadStream::new(server, Closer::new(), Activity::new());
        client.write_all(b"hello world").await.unwrap();
        input.ready().await;
        assert_eq!(&input.read(5).unwrap()[..], b"hello");
        assert_eq!(&input.read(100).unwrap()[..], b" world");
        drop(client);
        input.ready().await;
        assert!(matches!(input.read(10), Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn close_ends_a_pending_read() {
        let (_client, server) = tokio::io::duplex(1024);
        let closer = Closer::new();
        let mut input = ReadStream::new(server, closer.clone(), Activity::new());
        closer.close("test");
        input.ready().await;
        assert!(matches!(input.read(10), Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn backpressure_holds_at_capacity_and_nothing_is_lost_on_drop() {
        // The peer reads nothing at first: the duplex takes 4 KiB, the stream holds the rest.
        let (mut client, server) = tokio::io::duplex(4096);
        let (mut output, slot) = WriteStream::new(server, Closer::new(), Activity::new());
        let mut sent = Vec::new();
        let mut i = 0u8;
        loop {
            let permit = output.check_write().unwrap();
            if permit == 0 {
                break;
            }
            let chunk: Vec<u8> = (0..permit.min(10_000))
                .map(|_| {
                    i = i.wrapping_add(1);
                    i
                })
                .collect();
            sent.extend_from_slice(&chunk);
            output.write(Bytes::from(chunk)).unwrap();
        }
        assert_eq!(sent.len(), 4096 + WRITE_CAPACITY, "the socket buffer plus the stream's capacity");
        drop(output);
        let leftover = slot.lock().take().expect("leftover after drop");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        leftover.finish().await.unwrap();
        assert_eq!(reader.await.unwrap(), sent);
    }
}
