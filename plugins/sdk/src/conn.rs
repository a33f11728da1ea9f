//! [`Connection`]: the byte streams the host hands a plugin, as `std::io` types.

use std::io::{self, BufRead, ErrorKind, Read, Write};

use crate::worlds::full::switchboard::plugin::tls;
use crate::worlds::full::wasi::io::poll::{Pollable, poll};
use crate::worlds::full::wasi::io::streams::{InputStream, OutputStream, StreamError};
use crate::{ConnectionInfo, Room, TlsSession};

/// Largest message [`Connection::send`] hands over in one `blocking-write-and-flush`.
const SMALL_SEND: usize = 4096;

/// Bytes asked for per read from the host; large reads keep bulk transfers cheap.
const READ_CHUNK: u64 = 64 * 1024;

/// One conversation: the peer's bytes in, ours out.
///
/// Implements [`Read`], [`BufRead`] and [`Write`]; the end of the peer's stream reads as
/// `Ok(0)`. Writes go out as the host accepts them (the host applies backpressure when the
/// peer does not read); [`Connection::send`] writes and flushes, like `sendall`.
pub struct Connection {
    info: ConnectionInfo,
    // Pollables are children of their streams: they are declared (and so dropped) first.
    input_ready: Pollable,
    output_ready: Pollable,
    input: InputStream,
    output: OutputStream,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    /// The peer reset the connection or stopped taking our output.
    peer_gone: bool,
    /// The host is draining: the input ended, the output is still open.
    draining: bool,
    /// Bytes went out with `write` since the last flush: a flush with nothing to flush
    /// makes no host call.
    unflushed: bool,
}

/// The text the host's drained input stream fails with (the host's `DRAINING`).
const DRAINING_PREFIX: &str = "draining:";

/// What [`Connection::wait`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Bytes (or the end of the stream) can be read without blocking.
    Input,
    /// A message is waiting in the room.
    Room,
}

impl Connection {
    /// Wraps the streams handed to `handle-connection`.
    pub fn new(info: ConnectionInfo, input: InputStream, output: OutputStream) -> Self {
        Connection {
            info,
            input_ready: input.subscribe(),
            output_ready: output.subscribe(),
            input,
            output,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            peer_gone: false,
            draining: false,
            unflushed: false,
        }
    }

    /// Whether the input ended because the host is shutting down (draining) rather than
    /// because the peer closed: the output is still open, so a goodbye reaches the peer.
    /// Reads see a plain end of input.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Who is on the other end, and how they reached us.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The TLS session the connection arrived over (a `tls:` listener): the server name
    /// the client asked for, the ALPN protocol, the version and cipher suite, and the
    /// verified client certificate; `None` over plain TCP, serial and dialed connections.
    ///
    /// The first call makes the plugin import `switchboard:plugin/tls` (WIT 0.1.2), which
    /// hosts before 0.1.2 lack; a plugin that never calls it loads on any host.
    pub fn tls(&self) -> Option<TlsSession> {
        tls::session()
    }

    /// Whether the peer has gone away: it reset the connection, or closed it while we
    /// were writing. The SDK ends such a conversation quietly, whatever the handler
    /// returns, because the peer leaving is no fault of the plugin's.
    pub fn peer_gone(&self) -> bool {
        self.peer_gone
    }

    /// The peer's address (`HOST:PORT`), or the device path of a serial line.
    pub fn peer(&self) -> &str {
        &self.info.peer
    }

    /// Writes all of `data` and flushes it, like a socket's `sendall`.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        // A small message goes out in one host call: write, flush and wait, inside the
        // host (the call is limited to 4096 bytes by the WASI contract).
        if data.len() <= SMALL_SEND {
            let sent = self.output.blocking_write_and_flush(data);
            sent.map_err(|e| self.write_error(e))?;
            // The stream's flush covered earlier writes too.
            self.unflushed = false;
            return Ok(());
        }
        self.write_all(data)?;
        self.flush()
    }

    /// Blocks until input can be read or a room message is waiting; input wins a tie.
    pub fn wait(&mut self, room: &Room) -> Event {
        if self.pos < self.buf.len() || self.eof {
            return Event::Input;
        }
        let ready = poll(&[&self.input_ready, room.pollable()]);
        if ready.contains(&0) { Event::Input } else { Event::Room }
    }

    /// Bytes already received and not yet consumed (never blocks).
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }
}

impl Connection {
    /// The output stream, for [`crate::files`]' splices.
    pub(crate) fn output_stream(&self) -> &OutputStream {
        &self.output
    }

    /// Notes that bytes went out other than through `write` (a splice): the next flush
    /// must wait for them.
    pub(crate) fn wrote(&mut self) {
        self.unflushed = true;
    }

    /// Notes that the peer is gone and says why.
    pub(crate) fn peer_went_away(&mut self, why: String) -> io::Error {
        self.peer_gone = true;
        io::Error::new(ErrorKind::ConnectionReset, why)
    }

    /// The I/O error for a failed write; the peer is gone either way.
    fn write_error(&mut self, err: StreamError) -> io::Error {
        self.peer_gone = true;
        stream_error(err, ErrorKind::BrokenPipe)
    }
}

fn stream_error(err: StreamError, closed: ErrorKind) -> io::Error {
    match err {
        StreamError::Closed => io::Error::new(closed, "the connection is closed"),
        StreamError::LastOperationFailed(e) => io::Error::new(ErrorKind::ConnectionReset, e.to_debug_string()),
    }
}

impl Read for Connection {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Connection {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.buf.len() && !self.eof {
            match self.input.blocking_read(READ_CHUNK) {
                Ok(bytes) => {
                    // The host's vector becomes our buffer: no second copy.
                    self.buf = bytes;
                    self.pos = 0;
                }
                Err(StreamError::Closed) => self.eof = true,
                Err(StreamError::LastOperationFailed(e)) if e.to_debug_string().starts_with(DRAINING_PREFIX) => {
                    self.eof = true;
                    self.draining = true;
                }
                Err(e) => {
                    // A failed read is a reset: the peer is gone.
                    self.peer_gone = true;
                    return Err(stream_error(e, ErrorKind::UnexpectedEof));
                }
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.buf.len());
    }
}

impl Write for Connection {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        loop {
            let permit = self.output.check_write().map_err(|e| self.write_error(e))?;
            if permit == 0 {
                self.output_ready.block();
                continue;
            }
            let n = data.len().min(usize::try_from(permit).unwrap_or(usize::MAX));
            self.output.write(&data[..n]).map_err(|e| self.write_error(e))?;
            self.unflushed = true;
            return Ok(n);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // The last flush (or `send`) already waited for everything before it.
        if !self.unflushed {
            return Ok(());
        }
        self.unflushed = false;
        self.output.flush().map_err(|e| self.write_error(e))?;
        // `check-write` reports 0 until the flush has completed.
        while self.output.check_write().map_err(|e| self.write_error(e))? == 0 {
            self.output_ready.block();
        }
        Ok(())
    }
}
