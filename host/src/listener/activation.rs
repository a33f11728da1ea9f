//! Socket activation: listening sockets that systemd (or `systemd-socket-activate`)
//! opened and passed to this process (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, as
//! `sd_listen_fds_with_names(3)` reads them), served by name: `listen = ["systemd:NAME"]`.
//!
//! The passed sockets are taken once, on first use, and kept open for the life of the
//! process; each listener serves a duplicate of its socket, so a plugin that is removed
//! and comes back (or a reload that keeps the listener) finds its socket still there.
//! Whether a socket carries TCP or UDP is read from the socket itself (`SO_TYPE`).

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// What a passed socket carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A listening stream socket: TCP.
    Stream,
    /// A datagram socket: UDP.
    Datagram,
}

/// One passed socket.
struct Passed {
    name: String,
    fd: OwnedFd,
    kind: Kind,
}

/// The sockets passed to this process, or why they could not be read.
fn passed() -> &'static Result<Vec<Passed>, String> {
    static PASSED: OnceLock<Result<Vec<Passed>, String>> = OnceLock::new();
    PASSED.get_or_init(|| {
        let fds = sd_notify::listen_fds_with_names().map_err(|e| format!("reading LISTEN_FDS/LISTEN_FDNAMES: {e}"))?;
        let mut sockets = Vec::new();
        for (raw, name) in fds {
            // SAFETY: LISTEN_PID names this process, so the descriptors LISTEN_FDS counts
            // from 3 were opened for it and nothing else in the process owns them (they
            // are taken once, here).
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let kind = match socket2::SockRef::from(&fd).r#type() {
                Ok(t) if t == socket2::Type::STREAM => Kind::Stream,
                Ok(t) if t == socket2::Type::DGRAM => Kind::Datagram,
                Ok(other) => {
                    return Err(format!(
                        "socket {name:?} (fd {raw}) is of type {other:?}; only stream (TCP) and datagram (UDP) sockets can be served"
                    ));
                }
                Err(e) => return Err(format!("fd {raw} ({name:?}) is not a socket: {e}")),
            };
            sockets.push(Passed { name, fd, kind });
        }
        Ok(sockets)
    })
}

/// The names of the passed sockets, for error messages.
fn names(sockets: &[Passed]) -> String {
    if sockets.is_empty() {
        return "none was passed: LISTEN_FDS is unset or LISTEN_PID names another process; start switchboard from a .socket unit or systemd-socket-activate".into();
    }
    let names: Vec<String> = sockets.iter().map(|s| format!("{:?}", s.name)).collect();
    format!("the passed ones are {} (FileDescriptorName= in the .socket unit, or --fdname= of systemd-socket-activate)", names.join(", "))
}

/// What the socket named `name` carries; `None` when there is none of that name.
pub(crate) fn kind(name: &str) -> Option<Kind> {
    passed().as_ref().ok()?.iter().find(|s| s.name == name).map(|s| s.kind)
}

/// A duplicate of the socket passed as `name`, non-blocking, with what it carries.
pub(crate) fn take(name: &str) -> io::Result<(OwnedFd, Kind)> {
    let sockets = passed().as_ref().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.clone()))?;
    let mut named = sockets.iter().filter(|s| s.name == name);
    let Some(socket) = named.next() else {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no socket named {name:?} was passed by systemd; {}", names(sockets))));
    };
    if named.next().is_some() {
        // FileDescriptorName= names every socket of its unit: with two ListenStream= lines
        // one name would stand for two sockets, and serving one would hide the other.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("several sockets are named {name:?}; give each its own name (one .socket unit per FileDescriptorName=)"),
        ));
    }
    let fd = socket.fd.as_fd().try_clone_to_owned()?;
    socket2::SockRef::from(&fd).set_nonblocking(true)?;
    Ok((fd, socket.kind))
}
