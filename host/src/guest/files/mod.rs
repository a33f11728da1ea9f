//! A granted file's `input-stream` that the host splices straight into a connection.
//!
//! A plugin serving a file (getfile) would otherwise move every byte through its own
//! memory twice: `read` copies the file's bytes into the guest, `write` copies them back
//! out. wasi's `output-stream.blocking-splice` names the transfer instead, and the host
//! does it here: it reads the file into a buffer of its own, straight into the connection's
//! output stream. Reads that the page cache can answer run in place (`preadv2` with
//! `RWF_NOWAIT`); only a read that would wait for the disk goes to the blocking pool.
//!
//! Two linker definitions replace wasmtime-wasi's: `descriptor.read-via-stream` hands out
//! a [`FileStream`] (and notes it in the instance's [`Spliceable`] table), and
//! `output-stream.blocking-splice` takes the fast path when its source is one of those and
//! the stream's own reads have nothing in flight. Everything else — another source, a
//! partly read stream — goes through wasmtime-wasi's generic splice, unchanged. The output
//! stream is whatever the connection's is: its backpressure ([`super::stream::WRITE_CAPACITY`])
//! bounds what is held, and a splice never waits for the peer once it has moved a byte.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Weak};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;
use wasmtime_wasi::p2::bindings::io::streams::{self as wit_streams, HostOutputStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, InputStream, Pollable, StreamError, StreamResult};

/// Most bytes one `blocking-splice` call moves before it returns to the guest: a call is
/// host code the epoch cannot interrupt, so it must not hold its worker for a whole file.
const MAX_SPLICE: usize = 1024 * 1024;

/// Largest read of the file for the guest's own `read` calls.
const MAX_READ: usize = 64 * 1024;

/// The file streams an instance holds, by resource handle, so `blocking-splice` can
/// recognise its source. An entry whose stream was dropped no longer upgrades; a handle
/// the table reuses for a new file stream overwrites it.
#[derive(Default)]
pub(crate) struct Spliceable(HashMap<u32, Weak<Mutex<Cursor>>>);

/// Where a file stream stands.
pub(crate) struct Cursor {
    file: Arc<std::fs::File>,
    /// Offset of the next byte the guest has not received.
    position: u64,
    /// The guest's own reads (`read`, `blocking-read`).
    state: ReadState,
    /// The file system cannot do `RWF_NOWAIT` reads: every read goes to the blocking pool.
    nowait_unsupported: bool,
}

enum ReadState {
    Idle,
    /// A read at `position` that waits for the disk, on the blocking pool.
    Waiting(tokio::task::JoinHandle<io::Result<Bytes>>),
    /// Bytes read at `position`, not yet handed to the guest.
    Ready(Bytes),
    Failed(io::Error),
    Ended,
}

/// The `input-stream` of a granted file, made by `read-via-stream`.
pub(crate) struct FileStream(Arc<Mutex<Cursor>>);

/// What an in-place read found.
enum Nowait {
    Bytes(Bytes),
    /// The page cache does not hold the bytes: read them on the blocking pool.
    WouldBlock,
    End,
}

impl Cursor {
    /// Reads up to `size` bytes at the position without waiting for the disk.
    fn read_nowait(&mut self, size: usize) -> io::Result<Nowait> {
        if self.nowait_unsupported {
            return Ok(Nowait::WouldBlock);
        }
        let mut buf = BytesMut::with_capacity(size);
        let iov = libc::iovec { iov_base: buf.spare_capacity_mut().as_mut_ptr().cast(), iov_len: size };
        let offset = libc::off_t::try_from(self.position).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        loop {
            // SAFETY: one iovec over `buf`'s `size` spare bytes, which outlive the call.
            let n = unsafe { libc::preadv2(self.file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
            if n >= 0 {
                let n = n as usize;
                if n == 0 {
                    return Ok(Nowait::End);
                }
                // SAFETY: the kernel wrote the first `n` bytes.
                unsafe { buf.set_len(n) };
                return Ok(Nowait::Bytes(buf.freeze()));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(Nowait::WouldBlock),
                Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => {
                    self.nowait_unsupported = true;
                    return Ok(Nowait::WouldBlock);
                }
                _ => return Err(e),
            }
        }
    }

    /// A read of up to `size` bytes at the position on the blocking pool.
    fn read_blocking(&self, size: usize) -> tokio::task::JoinHandle<io::Result<Bytes>> {
        let (file, position) = (self.file.clone(), self.position);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0; size];
            loop {
                match file.read_at(&mut buf, position) {
                    Ok(n) => {
                        buf.truncate(n);
                        return Ok(Bytes::from(buf));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        })
    }
}

/// What a blocking-pool read gave: bytes, or `None` at the end of the file.
fn settle(done: Result<io::Result<Bytes>, tokio::task::JoinError>) -> io::Result<Option<Bytes>> {
    let bytes = done.map_err(io::Error::other)??;
    Ok((!bytes.is_empty()).then_some(bytes))
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileStream {
    async fn ready(&mut self) {
        let task = {
            let mut cursor = self.0.lock();
            match std::mem::replace(&mut cursor.state, ReadState::Idle) {
                ReadState::Waiting(task) => task,
                other => {
                    cursor.state = other;
                    return;
                }
            }
        };
        // Dropped while waiting, the read is simply made again: the position only moves
        // when the guest receives bytes.
        let state = match settle(task.await) {
            Ok(Some(bytes)) => ReadState::Ready(bytes),
            Ok(None) => ReadState::Ended,
            Err(e) => ReadState::Failed(e),
        };
        self.0.lock().state = state;
    }
}

#[wasmtime_wasi::async_trait]
impl InputStream for FileStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let mut cursor = self.0.lock();
        let size = size.min(MAX_READ);
        let bytes = match std::mem::replace(&mut cursor.state, ReadState::Idle) {
            ReadState::Idle if size == 0 => return Ok(Bytes::new()),
            ReadState::Idle => match cursor.read_nowait(size) {
                Ok(Nowait::Bytes(bytes)) => bytes,
                Ok(Nowait::End) => {
                    cursor.state = ReadState::Ended;
                    return Err(StreamError::Closed);
                }
                Ok(Nowait::WouldBlock) => {
                    cursor.state = ReadState::Waiting(cursor.read_blocking(size));
                    return Ok(Bytes::new());
                }
                Err(e) => return Err(StreamError::LastOperationFailed(e.into())),
            },
            ReadState::Waiting(task) => {
                cursor.state = ReadState::Waiting(task);
                return Ok(Bytes::new());
            }
            ReadState::Ready(mut bytes) => {
                if bytes.len() > size {
                    cursor.state = ReadState::Ready(bytes.split_off(size));
                }
                bytes
            }
            ReadState::Failed(e) => return Err(StreamError::LastOperationFailed(e.into())),
            ReadState::Ended => {
                cursor.state = ReadState::Ended;
                return Err(StreamError::Closed);
            }
        };
        cursor.position += bytes.len() as u64;
        Ok(bytes)
    }

    async fn cancel(&mut self) {
        if let ReadState::Waiting(task) = std::mem::replace(&mut self.0.lock().state, ReadState::Idle) {
            task.abort();
        }
    }
}

/// What the two definitions need of a Store's data.
pub(crate) struct FilesView<'a> {
    /// The instance's resources.
    pub(crate) table: &'a mut ResourceTable,
    /// Its file streams.
    pub(crate) spliceable: &'a mut Spliceable,
}

/// `read-via-stream`: wasmtime-wasi's rules (a directory is `is-directory`, a handle that
/// is not a descriptor traps), with a [`FileStream`] as the stream.
fn read_via_stream(
    state: FilesView<'_>,
    fd: &Resource<Descriptor>,
    offset: u64,
) -> wasmtime::Result<Result<Resource<DynInputStream>, ErrorCode>> {
    let file = match state.table.get(fd)? {
        Descriptor::File(f) => f.file.clone(),
        Descriptor::Dir(_) => return Ok(Err(ErrorCode::IsDirectory)),
    };
    let cursor = Arc::new(Mutex::new(Cursor { file, position: offset, state: ReadState::Idle, nowait_unsupported: false }));
    let weak = Arc::downgrade(&cursor);
    let stream: DynInputStream = Box::new(FileStream(cursor));
    let stream = state.table.push(stream)?;
    state.spliceable.0.insert(stream.rep(), weak);
    Ok(Ok(stream))
}

/// The cursor behind `src`, if it is a file stream whose own reads have nothing in
/// flight or buffered (those bytes come first, through the generic path).
fn fast_source(state: &FilesView<'_>, src: &Resource<DynInputStream>) -> Option<Arc<Mutex<Cursor>>> {
    let cursor = state.spliceable.0.get(&src.rep())?.upgrade()?;
    let idle = matches!(cursor.lock().state, ReadState::Idle);
    idle.then_some(cursor)
}

/// Moves up to `len` bytes of the file behind `cursor` into `dst`: waits until `dst` takes
/// bytes, then moves what it takes without waiting again, at most [`MAX_SPLICE`].
async fn splice_file(state: &mut FilesView<'_>, dst: &Resource<DynOutputStream>, cursor: &Mutex<Cursor>, len: u64) -> StreamResult<u64> {
    let len = usize::try_from(len).unwrap_or(usize::MAX).min(MAX_SPLICE);
    let mut moved = 0;
    while moved < len {
        let out = state.table.get_mut(dst)?;
        let permit = match out.check_write()? {
            0 if moved > 0 => break,
            0 => out.write_ready().await?,
            n => n,
        };
        let want = permit.min(len - moved);
        let read = cursor.lock().read_nowait(want);
        let bytes = match read {
            Ok(Nowait::Bytes(bytes)) => bytes,
            Ok(Nowait::End) if moved > 0 => break,
            Ok(Nowait::End) => return Err(StreamError::Closed),
            Ok(Nowait::WouldBlock) => {
                let task = cursor.lock().read_blocking(want);
                match settle(task.await) {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) if moved > 0 => break,
                    Ok(None) => return Err(StreamError::Closed),
                    Err(e) => return Err(StreamError::LastOperationFailed(e.into())),
                }
            }
            Err(e) => return Err(StreamError::LastOperationFailed(e.into())),
        };
        let n = bytes.len();
        state.table.get_mut(dst)?.write(bytes)?;
        cursor.lock().position += n as u64;
        moved += n;
    }
    // As wasi's blocking-splice does: what was written is flushed (a TLS stream's records
    // leave; the next call waits for it).
    state.table.get_mut(dst)?.flush()?;
    Ok(moved as u64)
}

/// `blocking-splice`: the fast path for a file source, wasmtime-wasi's otherwise; the
/// result in the WIT's terms.
async fn blocking_splice(
    mut state: FilesView<'_>,
    dst: Resource<DynOutputStream>,
    src: Resource<DynInputStream>,
    len: u64,
) -> wasmtime::Result<Result<u64, wit_streams::StreamError>> {
    let result = match fast_source(&state, &src) {
        Some(cursor) => splice_file(&mut state, &dst, &cursor, len).await,
        None => HostOutputStream::blocking_splice(state.table, dst, src, len).await,
    };
    match result {
        Ok(n) => Ok(Ok(n)),
        Err(e) => wit_streams::Host::convert_stream_error(state.table, e).map(Err),
    }
}

/// Replaces wasmtime-wasi's `read-via-stream` and `blocking-splice` in `linker` (which
/// must already hold wasmtime-wasi's definitions); `view` finds what they need in a
/// Store's data.
pub(crate) fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, view: fn(&mut T) -> FilesView<'_>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker
        .instance("wasi:filesystem/types@0.2.12")?
        .func_wrap("[method]descriptor.read-via-stream", move |mut store, (fd, offset): (Resource<Descriptor>, u64)| {
            Ok((read_via_stream(view(store.data_mut()), &fd, offset)?,))
        })?;
    linker.instance("wasi:io/streams@0.2.12")?.func_wrap_async(
        "[method]output-stream.blocking-splice",
        move |mut store, (dst, src, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            Box::new(async move { Ok((blocking_splice(view(store.data_mut()), dst, src, len).await?,)) })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests;
