//! `serve --record DIR`: each connection's bytes both ways written as a transcript
//! (`DIR/PLUGIN-ID.transcript`) that `switchboard test` replays, and every connection of
//! a plugin in one multi-client transcript (`DIR/PLUGIN.transcript`, clients named `cID`,
//! steps in the order they happened) for plugins whose clients meet in a hub room. The
//! connection's halves are wrapped ([`TeeRead`], [`TeeWrite`]) only when recording is
//! on, so an unrecorded connection pays nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::transcript::{Builder, Dir, escape, lines};
use crate::guest::bindings::ConnectionInfo;

/// Where transcripts are recorded.
#[derive(Clone)]
pub(crate) struct RecordDir {
    dir: PathBuf,
    /// Each plugin's multi-client transcript, by plugin name.
    sessions: Arc<Mutex<HashMap<String, Arc<Mutex<Sink>>>>>,
}

impl RecordDir {
    /// Records into `dir`, creating it if needed.
    pub(crate) fn new(dir: &Path) -> io::Result<RecordDir> {
        std::fs::create_dir_all(dir)?;
        Ok(RecordDir { dir: dir.to_path_buf(), sessions: Arc::default() })
    }

    /// Starts the transcript of one connection of `plugin`.
    pub(crate) fn start(&self, plugin: &str, version: &str, info: &ConnectionInfo) -> io::Result<Recording> {
        let heading = format!("# recorded by switchboard serve --record: plugin {plugin} {version}");
        let session = match self.sessions.lock().entry(plugin.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut sink = Sink::create(self.dir.join(format!("{plugin}.transcript")))?;
                sink.write(&format!("{heading}, every connection (client cID is connection ID)\n"));
                e.insert(Arc::new(Mutex::new(sink))).clone()
            }
        };
        let mut own = Sink::create(self.dir.join(format!("{plugin}-{}.transcript", info.id)))?;
        own.write(&format!("{heading}, connection {}\nconnects from {}\n", info.id, info.peer));
        let client = format!("c{}", info.id);
        session.lock().write(&format!("{client} connects from {}\n", info.peer));
        let inner = Inner { own, builder: Builder::default(), session, client };
        Ok(Recording(Arc::new(Mutex::new(inner))))
    }
}

/// The record directories in use, one [`RecordDir`] per path: a plugin reloaded with the
/// same `record` directory goes on writing its multi-client transcript.
#[derive(Clone, Default)]
pub(crate) struct Recorders(Arc<Mutex<HashMap<PathBuf, RecordDir>>>);

impl Recorders {
    /// The record directory at `dir`, created if needed.
    pub(crate) fn get(&self, dir: &Path) -> io::Result<RecordDir> {
        let mut dirs = self.0.lock();
        if let Some(found) = dirs.get(dir) {
            return Ok(found.clone());
        }
        let made = RecordDir::new(dir)?;
        dirs.insert(dir.to_path_buf(), made.clone());
        Ok(made)
    }
}

/// A transcript file being written; a write error stops it (logged once).
struct Sink {
    path: PathBuf,
    file: BufWriter<File>,
    failed: bool,
}

impl Sink {
    fn create(path: PathBuf) -> io::Result<Sink> {
        Ok(Sink { file: BufWriter::new(File::create(&path)?), path, failed: false })
    }

    fn write(&mut self, text: &str) {
        if self.failed || text.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(text.as_bytes()) {
            self.failed = true;
            tracing::warn!("recording stopped: cannot write {}: {e}", self.path.display());
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.file.flush()
            && !self.failed
        {
            self.failed = true;
            tracing::warn!("recording incomplete: cannot write {}: {e}", self.path.display());
        }
    }
}

struct Inner {
    /// This connection's own transcript.
    own: Sink,
    builder: Builder,
    /// The plugin's multi-client transcript: each chunk as it passes, so that the order
    /// across clients is the order things happened.
    session: Arc<Mutex<Sink>>,
    client: String,
}

impl Inner {
    fn write_out(&mut self) {
        let text = self.builder.take();
        self.own.write(&text);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.builder.flush();
        self.write_out();
        self.own.flush();
        self.session.lock().flush();
    }
}

/// One connection's transcript being written; shared by its two halves, finished when
/// both are dropped.
#[derive(Clone)]
pub(crate) struct Recording(Arc<Mutex<Inner>>);

impl Recording {
    fn bytes(&self, dir: Dir, data: &[u8]) {
        let mut inner = self.0.lock();
        inner.builder.bytes(dir, data);
        inner.write_out();
        let mark = if dir == Dir::Client { '>' } else { '<' };
        let text: String = lines(data).into_iter().map(|l| format!("{}{mark} {}\n", inner.client, escape(l))).collect();
        inner.session.lock().write(&text);
    }

    fn event(&self, line: &str) {
        let mut inner = self.0.lock();
        inner.builder.event(line);
        inner.write_out();
        let text = match line.strip_prefix("# ") {
            Some(comment) => format!("# {}: {comment}\n", inner.client),
            None => format!("{} {line}\n", inner.client),
        };
        inner.session.lock().write(&text);
    }

    /// Wraps a connection's halves so that their bytes are recorded.
    pub(crate) fn tee<R, W>(&self, (reader, writer): (R, W)) -> (TeeRead<R>, TeeWrite<W>) {
        (TeeRead { inner: reader, rec: self.clone(), ended: false }, TeeWrite { inner: writer, rec: self.clone(), ended: false })
    }
}

/// The client's half, recorded as `>` lines and `closes`.
pub(crate) struct TeeRead<R> {
    inner: R,
    rec: Recording,
    ended: bool,
}

impl<R: AsyncRead + Unpin> AsyncRead for TeeRead<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.rec.bytes(Dir::Client, &buf.filled()[before..]),
            Poll::Ready(Ok(())) if !this.ended => {
                this.ended = true;
                this.rec.event("closes");
            }
            Poll::Ready(Err(e)) if !this.ended => {
                this.ended = true;
                this.rec.event(&format!("# the connection failed: {e}"));
            }
            _ => {}
        }
        polled
    }
}

/// The server's half, recorded as `<` lines (the bytes the connection took) and `eof`.
pub(crate) struct TeeWrite<W> {
    inner: W,
    rec: Recording,
    ended: bool,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TeeWrite<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            this.rec.bytes(Dir::Server, &data[..*n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        if polled.is_ready() && !this.ended {
            this.ended = true;
            this.rec.event("eof");
        }
        polled
    }
}
