//! `switchboard test PLUGIN.wasm TRANSCRIPT...`: replays each transcript against the
//! plugin in-process, no sockets. Every client of a transcript is a fresh instance on an
//! in-memory pipe (role `accepted`, transport `tcp`, peer `127.0.0.1:40000+N` unless the
//! transcript says); the clients of one transcript share the runtime's hub, so a chat
//! plugin's clients meet in its room.
//!
//! Matching is timing-free: after a client's `>` lines are sent, its `<` lines must
//! arrive, in however many pieces, within the step timeout.

mod diff;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{CacheDir, Limits};
use crate::guest::bindings::{Role, Transport};
use crate::guest::closer::Closer;
use crate::instance::LoadError;
use crate::instance::grants::{DirGrant, Grants};
use crate::instance::plugin::{Plugin, PluginFile};
use crate::instance::runtime::Runtime;
use crate::listener::conversation;
use crate::session::Outcome;
use crate::session::stream::{Measures, Pace, run_stream};
use crate::session::transcript::{self, Action, Step};

/// How long a step waits for the server by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Each in-memory pipe's buffer.
const PIPE: usize = 256 * 1024;

/// Why `test` could not run at all (a mismatch is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The runtime could not be built.
    #[error("cannot start the WebAssembly runtime")]
    Runtime(#[source] anyhow::Error),
    /// The plugin did not load.
    #[error("{}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LoadError,
    },
}

/// What `test` runs with.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The plugin's settings (environment variables).
    pub env: Vec<(String, String)>,
    /// A host directory the plugin sees read-only as `/`.
    pub dir: Option<PathBuf>,
    /// How long a step waits for the server; `None`: no limit.
    pub timeout: Option<Duration>,
}

/// Replays every transcript; prints `ok PATH` or `FAIL PATH` and a report for each, then
/// a summary. Returns whether all passed.
pub async fn test(plugin: &Path, transcripts: &[PathBuf], options: TestOptions, cache: &CacheDir) -> Result<bool, TestError> {
    let rt = super::small_runtime(cache).map_err(TestError::Runtime)?;
    let grants = Grants { env: options.env.clone(), dir: options.dir.map(|host| DirGrant { host, writable: false }), ..Grants::default() };
    let load_error = |source| TestError::Load { path: plugin.to_path_buf(), source };
    let file = PluginFile::read(plugin).await.map_err(load_error)?;
    let loaded = Arc::new(Plugin::load(&rt, file, grants, Limits::default()).await.map_err(load_error)?);
    let timeout = options.timeout.unwrap_or(Duration::MAX);
    let (mut passed, mut failed) = (0, 0);
    for path in transcripts {
        let result = match std::fs::read_to_string(path) {
            Ok(text) => match transcript::parse(&text) {
                Ok(steps) => Replay { rt: &rt, plugin: &loaded, timeout, clients: BTreeMap::new() }.run(&steps).await,
                Err(e) => Err(format!("not a transcript: {e}")),
            },
            Err(e) => Err(format!("cannot read it: {e}")),
        };
        match result {
            Ok(()) => {
                passed += 1;
                println!("ok {}", path.display());
            }
            Err(report) => {
                failed += 1;
                println!("FAIL {}", path.display());
                for line in report.lines() {
                    println!("  {line}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// What one client has received so far.
#[derive(Debug, Default)]
struct Received {
    bytes: Vec<u8>,
    ended: bool,
}

struct Client {
    writer: Option<WriteHalf<DuplexStream>>,
    received: watch::Receiver<Received>,
    /// How much of `received` the steps have matched.
    matched: usize,
    session: Option<JoinHandle<Outcome>>,
}

struct Replay<'a> {
    rt: &'a Arc<Runtime>,
    plugin: &'a Arc<Plugin>,
    timeout: Duration,
    clients: BTreeMap<String, Client>,
}

fn who(name: &str) -> String {
    if name.is_empty() { "the client".into() } else { format!("client {name}") }
}

impl Replay<'_> {
    async fn run(mut self, steps: &[Step]) -> Result<(), String> {
        let result = self.steps(steps).await;
        let ends = self.finish().await;
        match (result, ends) {
            (Ok(()), ends) if ends.is_empty() => Ok(()),
            (Ok(()), ends) => Err(ends.join("\n")),
            (Err(report), ends) if ends.is_empty() => Err(report),
            (Err(report), ends) => Err(format!("{}\n{}", report.trim_end(), ends.join("\n"))),
        }
    }

    async fn steps(&mut self, steps: &[Step]) -> Result<(), String> {
        let mut i = 0;
        while i < steps.len() {
            let step = &steps[i];
            let at = |what: String| format!("line {}: {what}", step.line);
            if !matches!(step.action, Action::Connect(_)) && !self.clients.contains_key(&step.client) {
                self.connect(&step.client, None);
            }
            match &step.action {
                Action::Connect(peer) => {
                    if self.clients.contains_key(&step.client) {
                        return Err(at(format!("{} is already connected", who(&step.client))));
                    }
                    self.connect(&step.client, peer.clone());
                }
                Action::Send(bytes) => {
                    let client = self.clients.get_mut(&step.client).expect("connected above");
                    let Some(writer) = client.writer.as_mut() else {
                        return Err(at(format!("{} sends after it closed", who(&step.client))));
                    };
                    match tokio::time::timeout(self.timeout, writer.write_all(bytes)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(at(format!("{} cannot send: {e} (the plugin has ended)", who(&step.client)))),
                        Err(_) => {
                            return Err(at(format!(
                                "{} could not send for {:?}: the plugin does not read",
                                who(&step.client),
                                self.timeout
                            )));
                        }
                    }
                }
                Action::Expect(_) => {
                    // Consecutive `<` lines of one client are one expectation.
                    let mut expected = Vec::new();
                    while let Some(Step { action: Action::Expect(bytes), client, .. }) = steps.get(i)
                        && *client == step.client
                    {
                        expected.extend_from_slice(bytes);
                        i += 1;
                    }
                    self.expect(&step.client, &expected).await.map_err(at)?;
                    continue;
                }
                Action::Close => {
                    let client = self.clients.get_mut(&step.client).expect("connected above");
                    if let Some(mut writer) = client.writer.take() {
                        let _ = writer.shutdown().await;
                    }
                }
                Action::Eof => self.eof(&step.client).await.map_err(at)?,
            }
            i += 1;
        }
        Ok(())
    }

    fn connect(&mut self, name: &str, peer: Option<String>) {
        let n = self.clients.len();
        let peer = peer.unwrap_or_else(|| format!("127.0.0.1:{}", 40000 + n));
        let (client, server) = tokio::io::duplex(PIPE);
        let (mut reader, writer) = tokio::io::split(client);
        let info = conversation::info(self.rt, Transport::Tcp, Role::Accepted, peer, "127.0.0.1:7".into());
        let (rt, plugin) = (self.rt.clone(), self.plugin.clone());
        let session = tokio::spawn(async move {
            run_stream(&rt, &plugin, info, tokio::io::split(server), Closer::new(), Pace::Client, Measures::none()).await
        });
        let (tx, received) = watch::channel(Received::default());
        tokio::spawn(async move {
            let mut buf = vec![0; 16 * 1024];
            loop {
                let n = reader.read(&mut buf).await.unwrap_or(0);
                tx.send_modify(|r| if n == 0 { r.ended = true } else { r.bytes.extend_from_slice(&buf[..n]) });
                if n == 0 {
                    return;
                }
            }
        });
        let client = Client { writer: Some(writer), received, matched: 0, session: Some(session) };
        self.clients.insert(name.to_string(), client);
    }

    async fn expect(&mut self, name: &str, expected: &[u8]) -> Result<(), String> {
        let timeout = self.timeout;
        let client = self.clients.get_mut(name).expect("connected");
        let from = client.matched;
        let settled = |r: &Received| {
            let got = &r.bytes[from..];
            let n = got.len().min(expected.len());
            got[..n] != expected[..n] || got.len() >= expected.len() || r.ended
        };
        let timed_out = tokio::time::timeout(timeout, client.received.wait_for(settled)).await.is_err();
        let received = client.received.borrow();
        let got = &received.bytes[from..];
        if got.starts_with(expected) {
            client.matched += expected.len();
            return Ok(());
        }
        let shown = &got[..got.len().min(expected.len() + 4096)];
        let why = if timed_out {
            format!("{} waited {timeout:?} for the server's bytes", who(name))
        } else if received.ended && expected.starts_with(got) {
            format!("the server closed before sending all {} expects", who(name))
        } else {
            format!("the server's bytes to {} differ", who(name))
        };
        Err(format!("{why}\n{}", diff::diff(name, expected, shown)))
    }

    async fn eof(&mut self, name: &str) -> Result<(), String> {
        let timeout = self.timeout;
        let client = self.clients.get_mut(name).expect("connected");
        let from = client.matched;
        let timed_out = tokio::time::timeout(timeout, client.received.wait_for(|r| r.ended || r.bytes.len() > from)).await.is_err();
        let received = client.received.borrow();
        if received.bytes.len() > from {
            let more = &received.bytes[from..];
            return Err(format!("the server sent {} more than expected instead of closing\n{}", who(name), diff::diff(name, b"", more)));
        }
        if timed_out {
            return Err(format!("{} waited {timeout:?} for the server to close", who(name)));
        }
        Ok(())
    }

    /// Closes every client still open (in the order they connected) and waits for their
    /// plugins to end; returns how each that did not end well ended.
    async fn finish(&mut self) -> Vec<String> {
        for client in self.clients.values_mut() {
            if let Some(mut writer) = client.writer.take() {
                let _ = writer.shutdown().await;
            }
        }
        let mut ends = Vec::new();
        for (name, client) in &mut self.clients {
            let Some(mut session) = client.session.take() else { continue };
            match tokio::time::timeout(self.timeout, &mut session).await {
                Ok(Ok(Outcome::Ok)) => {}
                Ok(Ok(outcome)) => ends.push(format!("the plugin serving {} ended: {}", who(name), describe(&outcome))),
                Ok(Err(e)) => ends.push(format!("the plugin serving {} failed: {e}", who(name))),
                Err(_) => {
                    session.abort();
                    ends.push(format!("the plugin serving {} did not end within {:?} of its client closing", who(name), self.timeout));
                }
            }
        }
        ends
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "ok".into(),
        Outcome::Err(msg) | Outcome::Trap(msg) | Outcome::Closed(msg) | Outcome::Failed(msg) => format!("{}: {msg}", outcome.kind()),
        Outcome::Limit(hit, msg) => format!("{}: {msg}", hit.name()),
    }
}
