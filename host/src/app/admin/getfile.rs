//! `POST /getfile`: the seeds' getfilegui.py as a web form. Runs the getfile plugin with
//! role `dialed` (as `switchboard connect` does) against the server and port given,
//! into a fresh temporary directory granted read-write as its `/`, then streams the file
//! it saved to the browser as a download. A refusal (nothing sent, a name the server
//! refuses, an address not allowed) is a page that says so.
//!
//! Where it may dial: loopback addresses, and the blocks given with
//! `--admin-dial-allow CIDR` — never anywhere else, so the form is no open relay into
//! the operator's network. The name is resolved once and that address is dialed.
//!
//! Which component runs: `--admin-getfile PATH` if given, else the file of the served
//! plugin named `getfile`. How much it may fetch: `--admin-getfile-max` (1 GiB by
//! default); the temporary directory is measured while the transfer runs and a transfer
//! that grows past the cap is stopped and answered with 413.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

use super::api::percent_decode;
use super::{Authorized, Body, State, text};
use crate::config::{AdminOptions, Cidr, Limits};
use crate::guest::bindings::{Role, Transport};
use crate::guest::closer::Closer;
use crate::instance::grants::{DirGrant, Grants, Stdio};
use crate::instance::plugin::{Plugin, PluginFile};
use crate::listener::conversation;
use crate::session::Outcome;
use crate::session::stream::{Measures, Pace, run_stream};
use crate::util::error::Chain;

/// Largest form accepted.
const MAX_FORM: usize = 16 << 10;
/// How long dialing may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes per chunk of the download.
const CHUNK: usize = 64 << 10;
/// How often the temporary directory is measured during a transfer.
const MEASURE_EVERY: Duration = Duration::from_millis(20);

/// The form's settings.
pub(super) struct Form {
    component: Option<PathBuf>,
    dial_allow: Vec<Cidr>,
    max: u64,
}

impl Form {
    /// From `--admin-getfile` and `--admin-dial-allow`.
    pub(super) fn new(options: &AdminOptions) -> Form {
        Form { component: options.getfile.clone(), dial_allow: options.dial_allow.clone(), max: options.getfile_max.0 as u64 }
    }
}

/// A refusal shown to the browser.
struct Refusal(StatusCode, String);

/// Answers the form.
pub(super) async fn fetch(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let header_token = state.authorized(&req);
    match fetch_file(state, req, header_token).await {
        Ok(response) => response,
        Err(Refusal(status, why)) => {
            tracing::info!("getfile form: {why}");
            text(status, "text/html; charset=utf-8", super::page::refusal_page(&why))
        }
    }
}

async fn fetch_file(state: &Arc<State>, req: Request<Incoming>, header_token: Authorized) -> Result<Response<Body>, Refusal> {
    let bad = |why: String| Refusal(StatusCode::BAD_REQUEST, why);
    let body = Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .map_err(|e| bad(format!("cannot read the form (at most {MAX_FORM} bytes): {e}")))?
        .to_bytes();
    let form = parse_form(&body).ok_or_else(|| bad("the form is not url-encoded UTF-8".into()))?;
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string());
    if !matches!(header_token, Authorized::Yes) {
        match state.token_matches(field("token").as_deref()) {
            Authorized::Yes => {}
            Authorized::Missing => {
                return Err(Refusal(StatusCode::UNAUTHORIZED, "this server needs its admin token: fill in the Token field".into()));
            }
            Authorized::Wrong => return Err(Refusal(StatusCode::FORBIDDEN, "wrong token".into())),
        }
    }
    let server = field("server").filter(|s| !s.is_empty()).ok_or_else(|| bad("Server is empty: give a host name or address".into()))?;
    let port_text = field("port").unwrap_or_default();
    let port: u16 =
        port_text.parse().ok().filter(|p| *p != 0).ok_or_else(|| bad(format!("Port {port_text:?} is not a port number (1 to 65535)")))?;
    let name = field("file").filter(|s| !s.is_empty()).ok_or_else(|| bad("File is empty: give the name of the file to fetch".into()))?;
    let local = local_name(&name).ok_or_else(|| bad(format!("File {name:?} has no file name to save under")))?;

    let addr = tokio::net::lookup_host((server.as_str(), port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| bad(format!("Server {server:?} does not resolve to an address")))?;
    let ip = addr.ip().to_canonical();
    if !ip.is_loopback() && !state.getfile.dial_allow.iter().any(|c| c.contains(ip)) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            format!("dialing {ip} is not allowed: only loopback addresses, unless the server is started with --admin-dial-allow CIDR"),
        ));
    }
    let component = component(state)?;
    let dir = TempDir::new().map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot make a temporary directory: {e}")))?;
    let shared = state.registry.shared();
    let rt = &shared.rt;
    let unavailable =
        |e: &(dyn std::error::Error + 'static)| Refusal(StatusCode::SERVICE_UNAVAILABLE, format!("{}: {}", component.display(), Chain(e)));
    let file = PluginFile::read(&component).await.map_err(|e| unavailable(&e))?;
    let grants =
        Grants { env: vec![("FILE".into(), name.clone())], dir: Some(DirGrant { host: dir.0.clone(), writable: true }), stdio: Stdio::Log };
    let limits = Limits { cpu_budget: None, ..state.registry.limits() };
    let plugin = Arc::new(Plugin::load(rt, file, grants, limits).await.map_err(|e| unavailable(&e))?);
    let socket = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| Refusal(StatusCode::BAD_GATEWAY, format!("cannot connect to {addr}: no answer within {DIAL_TIMEOUT:?}")))?
        .map_err(|e| Refusal(StatusCode::BAD_GATEWAY, format!("cannot connect to {addr}: {e}")))?;
    let _ = socket.set_nodelay(true);
    let local_addr = socket.local_addr().map(conversation::show).unwrap_or_default();
    let info = conversation::info(rt, Transport::Tcp, Role::Dialed, conversation::show(addr), local_addr);
    let closer = Closer::new();
    let cap = tokio::spawn(stop_past(dir.0.clone(), state.getfile.max, closer.clone()));
    let outcome = run_stream(rt, &plugin, info, socket.into_split(), closer, Pace::Client, Measures::none()).await;
    cap.abort();
    if matches!(cap.await, Ok(true)) {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{server}:{port} sent more of {name:?} than this form fetches ({} bytes; the server's --admin-getfile-max): the transfer was stopped",
                state.getfile.max
            ),
        ));
    }
    if !matches!(outcome, Outcome::Ok) {
        let why = match outcome {
            Outcome::Ok => unreachable!("matched above"),
            Outcome::Err(msg) | Outcome::Trap(msg) | Outcome::Closed(msg) | Outcome::Failed(msg) => msg,
            Outcome::Limit(hit, msg) => format!("{}: {msg}", hit.name()),
        };
        return Err(Refusal(StatusCode::BAD_GATEWAY, format!("{server}:{port} gave no file {name:?}: {why}")));
    }
    let saved = dir.0.join(&local);
    let file = tokio::fs::File::open(&saved)
        .await
        .map_err(|e| Refusal(StatusCode::BAD_GATEWAY, format!("the getfile client saved no {local:?}: {e}")))?;
    let len = file.metadata().await.map(|m| m.len()).ok();
    // The open file outlives its directory: nothing is left behind, whatever the browser does.
    drop(dir);
    tracing::info!(server = %addr, file = %name, bytes = len, "getfile form: fetched");
    let mut response = Response::new(FileBody { file }.boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/octet-stream"));
    if let Ok(value) = format!("attachment; filename=\"{}\"", local.replace(['"', '\\', '\r', '\n'], "_")).parse() {
        headers.insert(CONTENT_DISPOSITION, value);
    }
    if let Some(len) = len {
        headers.insert(CONTENT_LENGTH, len.into());
    }
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

/// Measures `dir` (the files directly in it) every [`MEASURE_EVERY`]; past `max` bytes,
/// closes the transfer and returns true. Runs until aborted otherwise.
async fn stop_past(dir: PathBuf, max: u64, closer: Closer) -> bool {
    let mut ticks = tokio::time::interval(MEASURE_EVERY);
    loop {
        ticks.tick().await;
        let mut total = 0u64;
        if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                total += entry.metadata().await.map(|m| m.len()).unwrap_or(0);
            }
        }
        if total > max {
            closer.close(format!("the /getfile form's cap of {max} bytes was reached"));
            return true;
        }
    }
}

/// The getfile component to run.
fn component(state: &State) -> Result<PathBuf, Refusal> {
    if let Some(path) = &state.getfile.component {
        return Ok(path.clone());
    }
    state.registry.paths_of("getfile").into_iter().find(|p| p.extension().is_some_and(|e| e == "wasm")).ok_or_else(|| {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "no getfile component: serve a plugin named getfile, or start the server with --admin-getfile PATH".into(),
        )
    })
}

/// The name's last component, as the getfile client saves it; `None` if it has none.
fn local_name(name: &str) -> Option<String> {
    let last = Path::new(name).file_name()?.to_str()?;
    (!last.is_empty() && last != "." && last != "..").then(|| last.to_string())
}

/// `application/x-www-form-urlencoded` pairs.
fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(&k.replace('+', " "))?, percent_decode(&v.replace('+', " "))?))
        })
        .collect()
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("switchboard-getfile-{}-{n}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A download read from an open file, chunk by chunk.
struct FileBody {
    file: tokio::fs::File,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        // tokio's File buffers the read under way itself: a fresh buffer per poll is fine.
        let mut chunk = vec![0u8; CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut self.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(buf.filled()))))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_names_parse() {
        let form = parse_form(b"server=127.0.0.1&port=50001&file=sub%2Fa+b.txt&token=").unwrap();
        assert_eq!(form[2], ("file".to_string(), "sub/a b.txt".to_string()));
        assert_eq!(form[3].1, "");
        assert!(parse_form(b"file=%zz").is_none());
        assert_eq!(local_name("sub/a b.txt").as_deref(), Some("a b.txt"));
        assert_eq!(local_name("sub/.."), None);
    }
}
