//! Files from the granted directory sent to the peer by the host:
//! [`Connection::send_file`].
//!
//! Copying a file through the plugin (`read` into a buffer, `write` it out) moves every
//! byte through the guest's memory twice and keeps the buffer resident while the peer is
//! slow. `send_file` opens the file with wasi:filesystem and hands the transfer to the
//! host with `output-stream.blocking-splice`: the host reads the file and writes the
//! connection itself, and the plugin holds nothing but the two handles.

use std::io::{self, ErrorKind};

use crate::Connection;
use crate::worlds::full::wasi::io::streams::StreamError;

mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "package switchboard:sdk-files;
                 world files {
                   import wasi:filesystem/types@0.2.12;
                   import wasi:filesystem/preopens@0.2.12;
                 }",
        world: "switchboard:sdk-files/files",
        with: {
            "wasi:io/poll@0.2.12": crate::worlds::full::wasi::io::poll,
            "wasi:io/streams@0.2.12": crate::worlds::full::wasi::io::streams,
            "wasi:io/error@0.2.12": crate::worlds::full::wasi::io::error,
        },
        generate_all,
    });
}

use bindings::wasi::filesystem::preopens::get_directories;
use bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

/// Bytes asked for per splice; the host moves at most what the connection takes.
const SPLICE_CHUNK: u64 = 1 << 20;

/// Opens `path` (as the plugin sees it: absolute, under the granted directory `/`) for
/// reading, without following a symbolic link at its last component.
pub fn open(path: &str) -> io::Result<Descriptor> {
    let relative = path.trim_start_matches('/');
    let root = get_directories()
        .into_iter()
        .find_map(|(dir, at)| (at == "/").then_some(dir))
        .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "no directory is granted (serve --dir NAME=DIR)"))?;
    root.open_at(PathFlags::empty(), relative, OpenFlags::empty(), DescriptorFlags::READ).map_err(fs_error)
}

impl Connection {
    /// Sends the whole of `file` (from [`open`]) to the peer and flushes it; returns the
    /// bytes sent. The host moves the bytes (a splice); an error is either the file's
    /// (reading failed) or the connection's (the peer went away, [`Connection::peer_gone`]).
    pub fn send_file(&mut self, file: &Descriptor) -> io::Result<u64> {
        let source = file.read_via_stream(0).map_err(fs_error)?;
        let mut sent = 0;
        loop {
            match self.output_stream().blocking_splice(&source, SPLICE_CHUNK) {
                Ok(n) => sent += n,
                // The source's end; a closed output fails the next check instead.
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    let output_failed = self.output_stream().check_write().is_err();
                    if output_failed {
                        return Err(self.peer_went_away(e.to_debug_string()));
                    }
                    return Err(io::Error::other(e.to_debug_string()));
                }
            }
        }
        if self.output_stream().check_write().is_err() {
            return Err(self.peer_went_away("the connection is closed".into()));
        }
        drop(source);
        self.wrote();
        io::Write::flush(self)?;
        Ok(sent)
    }
}

/// A wasi:filesystem error as the `std::io` error it would be in Rust's std.
fn fs_error(code: ErrorCode) -> io::Error {
    let kind = match code {
        ErrorCode::NoEntry => ErrorKind::NotFound,
        ErrorCode::Access | ErrorCode::NotPermitted | ErrorCode::ReadOnly => ErrorKind::PermissionDenied,
        ErrorCode::IsDirectory => ErrorKind::IsADirectory,
        ErrorCode::NotDirectory => ErrorKind::NotADirectory,
        ErrorCode::InvalidSeek | ErrorCode::Invalid | ErrorCode::NameTooLong => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    };
    io::Error::new(kind, format!("{code:?}"))
}
