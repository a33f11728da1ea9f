//! Serial lines: one long conversation per port.
//!
//! The device is opened exclusively (`TIOCEXCL` and an exclusive `flock`), in raw mode,
//! 8N1, no flow control, at the listener's baud rate. Its byte stream goes to a fresh
//! instance's stream handler (transport `serial`, peer = local = the device path, role
//! `accepted`). When the plugin returns, a fresh instance takes over the same open port
//! (after a growing pause if plugins keep returning at once). When the device goes away
//! (USB unplugged, the far end of a pty closed: the host sees a hangup, `EIO` or end of
//! file), the instance is asked to close, the port is closed, and the device path is
//! reopened with backoff until it is back. When the service stops, the conversation is
//! closed gracefully at once: a serial line never ends by itself.
//!
//! All I/O is non-blocking through tokio's `AsyncFd`; opening (which may wait on a slow
//! driver) runs on a blocking thread. A plugin's flush means "handed to the kernel": the
//! host never waits for `tcdrain`, which would block an async thread until the bytes were
//! on the wire.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use parking_lot::Mutex;
use serialport::{DataBits, FlowControl, Parity, StopBits, TTYPort};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Shared;
use super::conversation::{self, SHUTTING_DOWN};
use crate::admission::{Source, Ticket};
use crate::guest::bindings::{Role, Transport};
use crate::guest::closer::Closer;
use crate::guest::traffic::Activity;
use crate::service::Service;
use crate::service::accounting::{Ended, ListenerStats};
use crate::session::stream::{Measures, Pace, run_stream};
use crate::util::backoff::Backoff;

/// First pause before reopening a vanished device, or before restarting a plugin that
/// returned at once; doubled on each repeat.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest such pause.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A conversation shorter than this counts as "returned at once" for the restart backoff.
const QUICK_RETURN: Duration = Duration::from_secs(1);

/// An open serial device.
pub(crate) struct SerialLine {
    device: String,
    baud: u32,
    fd: Arc<AsyncFd<TTYPort>>,
}

impl SerialLine {
    /// The device path, as given.
    pub(crate) fn device(&self) -> &str {
        &self.device
    }
}

/// Opens `device` at `baud`, 8N1, raw, exclusive and non-blocking.
///
/// Must be called within the tokio runtime (the descriptor is registered with it).
pub(crate) async fn open(device: &str, baud: u32) -> io::Result<SerialLine> {
    let path = device.to_string();
    let port = tokio::task::spawn_blocking(move || -> io::Result<TTYPort> {
        let port = serialport::new(&path, baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .exclusive(true)
            .open_native()
            .map_err(|e| explain(io::Error::from(e)))?;
        let fd = port.as_raw_fd();
        let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(port)
    })
    .await
    .map_err(|e| io::Error::other(format!("the opening thread failed: {e}")))??;
    // SAFETY: a `TTYPort` owns its descriptor: it stays open, and `as_raw_fd` returns
    // the same one, until the port is dropped, which only the `AsyncFd` can do.
    let fd = unsafe { AsyncFd::register(port) }?;
    Ok(SerialLine { device: device.to_string(), baud, fd: Arc::new(fd) })
}

/// Adds a hint to the errors that mean "not a serial device" or "already in use".
fn explain(e: io::Error) -> io::Error {
    let mut text = e.to_string();
    // Some errors come as "DESCRIPTION: DESCRIPTION".
    if let Some((a, b)) = text.split_once(": ")
        && a == b
    {
        text = a.to_string();
    }
    let hint = if text.contains("Inappropriate ioctl") || text.contains("Not a typewriter") {
        "not a serial device or terminal"
    } else if text.contains("exclusive lock") || text.contains("busy") {
        "another program (or listener) has it open"
    } else {
        return e;
    };
    io::Error::new(e.kind(), format!("{text} ({hint})"))
}

/// Serves the line until the service stops, reopening the device whenever it vanishes;
/// counts into `stats`.
pub(crate) async fn run(line: SerialLine, service: Arc<Service>, stats: Arc<ListenerStats>, shared: Shared) {
    let (device, baud) = (line.device.clone(), line.baud);
    let mut line = Some(line);
    let mut restart = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    loop {
        let Some(open_line) = line.take() else {
            match reopen(&device, baud, &service).await {
                Some(reopened) => {
                    line = Some(reopened);
                    continue;
                }
                None => return,
            }
        };
        let Some(ticket) = admitted(&service, &stats, &shared).await else { return };
        let started = Instant::now();
        let gone = converse(&open_line, ticket, &service, &stats, &shared).await;
        if stopping(&service) {
            return;
        }
        match gone {
            Some(reason) => {
                tracing::warn!(plugin = %service.name(), %device, "serial device gone ({reason}); reopening it when it is back");
                drop(open_line);
                restart.reset();
            }
            None => {
                line = Some(open_line);
                if started.elapsed() < QUICK_RETURN {
                    let wait = restart.next_pause();
                    tracing::debug!(plugin = %service.name(), %device, "the plugin returned at once; next instance in {wait:?}");
                    if !pause(&service, wait).await {
                        return;
                    }
                } else {
                    restart.reset();
                }
            }
        }
    }
}

/// Waits until admission lets a conversation on the line start (the connection limits
/// count a serial conversation like any other); `None` if the service stopped first.
async fn admitted(service: &Arc<Service>, stats: &ListenerStats, shared: &Shared) -> Option<Ticket> {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    loop {
        match shared.admission.admit(&service.gate, Source::Device) {
            Ok(ticket) => return Some(ticket),
            Err(refusal) => {
                service.refused(stats, &"the serial line", refusal);
                if !pause(service, backoff.next_pause()).await {
                    return None;
                }
            }
        }
    }
}

/// Runs one instance on the line; returns why the device is gone, if it is.
async fn converse(
    line: &SerialLine,
    ticket: Ticket,
    service: &Arc<Service>,
    stats: &Arc<ListenerStats>,
    shared: &Shared,
) -> Option<String> {
    let closer = Closer::new();
    let device = Arc::new(DeviceState::default());
    let reader = LineReader { fd: line.fd.clone(), device: device.clone(), closer: closer.clone() };
    let writer = LineWriter { fd: line.fd.clone(), device: device.clone(), closer: closer.clone() };
    let info = conversation::info(&shared.rt, Transport::Serial, Role::Accepted, line.device.clone(), line.device.clone());
    let open = stats.started();
    let activity = Activity::counted(stats.traffic.clone());
    // The conversation is a task of its own: should this listener's future be dropped
    // (its listener stopped), the guard below still closes it gracefully, and the drain
    // at shutdown waits for it.
    let plugin = service.current();
    let (entry, registered) = service.register(&info, &plugin, &closer, false);
    let talk = {
        let (rt, service, closer, entry, stats) = (shared.rt.clone(), service.clone(), closer.clone(), entry.clone(), stats.clone());
        async move {
            let _held = (ticket, registered);
            let measures = Measures {
                activity: activity.clone(),
                instantiation: Some(&stats.instantiation),
                table: Some(&entry.meters),
                transport: "serial",
                tls: None,
            };
            let outcome = run_stream(&rt, &plugin, info.clone(), (reader, writer), closer.clone(), Pace::Line, measures).await;
            let ended = Ended::of(&outcome, &closer, SHUTTING_DOWN, &activity);
            service.account(&info, &outcome);
            // Last, so that a line's conversation counted closed is counted in full.
            open.ended(ended);
        }
    };
    let conversation = conversation::spawn(shared, service, Some(&entry), talk);
    let _close_if_dropped = CloseOnDrop(closer.clone());
    tokio::pin!(conversation);
    let (mut stopping, mut forced) = (false, false);
    loop {
        tokio::select! {
            _ = &mut conversation => break,
            () = service.stopped(), if !stopping => {
                stopping = true;
                closer.close(SHUTTING_DOWN);
            }
            () = shared.close_all.cancelled(), if !forced => {
                forced = true;
                closer.close(SHUTTING_DOWN);
            }
        }
    }
    device.why_gone()
}

/// Closes a conversation when dropped.
struct CloseOnDrop(Closer);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close("the serial listener stopped");
    }
}

/// Waits for `device` to come back and opens it; `None` if the service stopped first.
async fn reopen(device: &str, baud: u32, service: &Arc<Service>) -> Option<SerialLine> {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut attempts = 0u64;
    loop {
        if !pause(service, backoff.next_pause()).await {
            return None;
        }
        attempts += 1;
        match open(device, baud).await {
            Ok(line) => {
                tracing::info!(plugin = %service.name(), %device, attempts, "serial device back: opened");
                return Some(line);
            }
            Err(e) => tracing::debug!(plugin = %service.name(), %device, attempts, "serial device still missing: {e}"),
        }
    }
}

/// Whether the service has stopped accepting.
fn stopping(service: &Service) -> bool {
    let stopped = std::pin::pin!(service.stopped());
    stopped.poll(&mut Context::from_waker(std::task::Waker::noop())).is_ready()
}

/// Sleeps for `d`; `false` if the service stopped meanwhile.
async fn pause(service: &Service, d: Duration) -> bool {
    tokio::select! {
        () = service.stopped() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Whether the device went away during a conversation, and why.
#[derive(Default)]
struct DeviceState {
    gone: Mutex<Option<String>>,
}

impl DeviceState {
    /// Records the first sign that the device is gone and ends the conversation.
    fn went_away(&self, closer: &Closer, why: String) {
        let mut gone = self.gone.lock();
        if gone.is_none() {
            *gone = Some(why);
            closer.close("the serial device went away");
        }
    }

    fn why_gone(&self) -> Option<String> {
        self.gone.lock().clone()
    }
}

/// The line's input, for one instance.
struct LineReader {
    fd: Arc<AsyncFd<TTYPort>>,
    device: Arc<DeviceState>,
    closer: Closer,
}

impl AsyncRead for LineReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), unfilled).map_err(io::Error::from)) {
                Ok(Ok(0)) => {
                    // In raw mode a read returns 0 only after a hangup.
                    this.device.went_away(&this.closer, "hung up".into());
                    return Poll::Ready(Ok(()));
                }
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => {
                    this.device.went_away(&this.closer, format!("read: {e}"));
                    return Poll::Ready(Err(e));
                }
                Err(_would_block) => continue,
            }
        }
    }
}

/// The line's output, for one instance.
struct LineWriter {
    fd: Arc<AsyncFd<TTYPort>>,
    device: Arc<DeviceState>,
    closer: Closer,
}

impl AsyncWrite for LineWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.as_raw_fd(), data).map_err(io::Error::from)) {
                Ok(Ok(n)) => return Poll::Ready(Ok(n)),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => {
                    this.device.went_away(&this.closer, format!("write: {e}"));
                    return Poll::Ready(Err(e));
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// The bytes are the kernel's once written; waiting until they are on the wire
    /// (`tcdrain`) would block an async thread.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The port stays open for the next instance.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
