//! The admin endpoint (`serve --admin ADDR`): a small HTTP/1 server in the host's own
//! runtime (hyper, no framework) with `GET /metrics`, `GET /healthz`, `GET /readyz`, the
//! JSON API under `/api/` ([`api`]), the status page at `/` ([`page`]) and the getfile
//! form at `/getfile` ([`getfile`]).
//!
//! Guards: with `--admin-token-file`, every POST needs `Authorization: Bearer TOKEN`; a
//! non-loopback address is refused without a token. A POST a browser sends from another
//! site (its `Origin` is not this endpoint) is refused, and on a loopback address a
//! request naming any other host (`Host:`; DNS rebinding) is too: a web page the
//! operator visits cannot close connections or drain the server.

mod api;
mod getfile;
mod metrics;
mod page;
mod process;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, ORIGIN, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AdminOptions;
use crate::control::registry::Registry;

/// The content type of the metrics exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the API's answers.
const JSON: &str = "application/json";

/// A response body: whole, or streamed (a download).
type Body = BoxBody<Bytes, std::io::Error>;

/// Why the admin endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A non-loopback address without a token.
    #[error(
        "--admin {0}: a non-loopback address needs --admin-token-file FILE (the admin API can close connections, reload plugins and drain the server); use 127.0.0.1 or ::1, or give a token"
    )]
    NoToken(SocketAddr),
    /// The token file cannot be read.
    #[error("--admin-token-file {}: cannot read it", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token file holds no token.
    #[error("--admin-token-file {}: the file is empty; put the token in it", path.display())]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// The address cannot be bound.
    #[error("--admin {0}: cannot listen")]
    Bind(SocketAddr, #[source] std::io::Error),
}

/// Binds `addr`, prints `listening admin http://ADDR` and serves until `stop`. A POST
/// to `/api/drain` cancels `drain` (serve then shuts down as on SIGTERM).
pub(crate) async fn start(
    addr: SocketAddr,
    options: &AdminOptions,
    registry: Arc<Registry>,
    stop: CancellationToken,
    drain: CancellationToken,
) -> Result<(), AdminError> {
    let token = match &options.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| AdminError::TokenFile { path: path.clone(), source })?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(AdminError::EmptyToken { path: path.clone() });
            }
            Some(token)
        }
        None => None,
    };
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(AdminError::NoToken(addr));
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| AdminError::Bind(addr, e))?;
    let bound = listener.local_addr().map_err(|e| AdminError::Bind(addr, e))?;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening admin http://{bound}");
    let _ = stdout.flush();
    drop(stdout);
    let state = Arc::new(State {
        metrics: metrics::metrics(registry.clone()),
        registry,
        token,
        loopback_only: bound.ip().is_loopback(),
        drain,
        getfile: getfile::Form::new(options),
    });
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("admin: cannot accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (state, stop) = (state.clone(), stop.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(state.answer(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    () = stop.cancelled() => {}
                    result = conn => if let Err(e) = result { tracing::debug!("admin connection: {e}") },
                }
            });
        }
    });
    Ok(())
}

/// What the handlers read.
struct State {
    registry: Arc<Registry>,
    metrics: prometheus_client::registry::Registry,
    /// `--admin-token-file`'s token.
    token: Option<String>,
    /// Bound to a loopback address: only loopback host names are answered.
    loopback_only: bool,
    /// Cancelled by `POST /api/drain`.
    drain: CancellationToken,
    getfile: getfile::Form,
}

/// Whether a request carries the token.
enum Authorized {
    /// Yes (or none is needed).
    Yes,
    /// No `Authorization` header.
    Missing,
    /// A different token.
    Wrong,
}

impl State {
    /// The response to `req`.
    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if let Some(refusal) = self.foreign(&req) {
            return refusal;
        }
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let is_post = method == Method::POST;
        // Every POST changes something: it needs the token (the getfile form may carry it
        // as a form field, since a plain HTML form cannot set a header).
        if is_post && path != "/getfile" {
            match self.authorized(&req) {
                Authorized::Yes => {}
                refused => return token_refusal(refused),
            }
        }
        let (get, post) = (method == Method::GET || method == Method::HEAD, is_post);
        match segments.as_slice() {
            ["metrics"] if get => text(StatusCode::OK, OPENMETRICS, metrics::render(&self.metrics)),
            ["healthz"] if get => text(StatusCode::OK, "text/plain", "ok\n".into()),
            ["readyz"] if get => match self.not_ready() {
                None => text(StatusCode::OK, "text/plain", "ready\n".into()),
                Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("not ready: {reason}\n")),
            },
            ["metrics" | "healthz" | "readyz"] => {
                text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", format!("{method} is not allowed here; use GET\n"))
            }
            [""] if get => page::status_page(),
            ["getfile"] if get => page::getfile_page(),
            ["getfile"] if post => getfile::fetch(&self, req).await,
            ["api", rest @ ..] => api::answer(&self, &method, rest).await,
            [""] | ["getfile"] => json_error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {path}; use GET")),
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                format!("no such endpoint: {path} (try /, /getfile, /metrics, /healthz, /readyz, /api/plugins, /api/connections)\n"),
            ),
        }
    }

    /// Whether `req` carries the token (always, when there is none).
    fn authorized(&self, req: &Request<Incoming>) -> Authorized {
        let Some(token) = &self.token else { return Authorized::Yes };
        let Some(given) = req.headers().get(AUTHORIZATION) else { return Authorized::Missing };
        let given = given.to_str().unwrap_or_default();
        // The scheme's name is case-insensitive (RFC 9110).
        match given.split_once(' ') {
            Some((scheme, given)) if scheme.eq_ignore_ascii_case("bearer") && same(given.trim().as_bytes(), token.as_bytes()) => {
                Authorized::Yes
            }
            _ => Authorized::Wrong,
        }
    }

    /// Whether a form field `given` is the token.
    fn token_matches(&self, given: Option<&str>) -> Authorized {
        match (&self.token, given) {
            (None, _) => Authorized::Yes,
            (Some(_), None | Some("")) => Authorized::Missing,
            (Some(token), Some(given)) if same(given.trim().as_bytes(), token.as_bytes()) => Authorized::Yes,
            (Some(_), Some(_)) => Authorized::Wrong,
        }
    }

    /// A refusal for a request from elsewhere: a POST whose `Origin` is another site, or
    /// (on loopback) a `Host` that is not a loopback name.
    fn foreign(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        let host = req.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        if self.loopback_only && !host.is_empty() && !is_loopback_host(host) {
            return Some(json_error(
                StatusCode::FORBIDDEN,
                format!("Host {host:?} is not this loopback endpoint: use http://127.0.0.1:PORT"),
            ));
        }
        if req.method() != Method::GET
            && let Some(origin) = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok())
            // Behind a TLS-terminating proxy the page's origin is https://.
            && origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_none_or(|o| o != host)
        {
            return Some(json_error(StatusCode::FORBIDDEN, format!("a request from another site ({origin}) is refused")));
        }
        None
    }

    /// Why the host is not ready; see [`Registry::not_ready`].
    fn not_ready(&self) -> Option<String> {
        self.registry.not_ready()
    }
}

/// Compares two tokens in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `host` (a `Host` header: name or address, maybe with a port) is loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| if port.chars().all(|c| c.is_ascii_digit()) { name } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The 401 or 403 for a request without the right token.
fn token_refusal(why: Authorized) -> Response<Body> {
    match why {
        Authorized::Missing => {
            let mut response = json_error(
                StatusCode::UNAUTHORIZED,
                "this request changes something and needs `Authorization: Bearer TOKEN` (the token in the server's --admin-token-file)"
                    .into(),
            );
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        _ => json_error(StatusCode::FORBIDDEN, "wrong token: it is not the one in the server's --admin-token-file".into()),
    }
}

/// A whole body.
fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

/// A response with `body`.
fn text(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// A JSON answer.
fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    text(status, JSON, format!("{value}\n"))
}

/// `{"error": "..."}`.
fn json_error(status: StatusCode, error: String) -> Response<Body> {
    json(status, &serde_json::json!({ "error": error }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_apart() {
        for host in ["127.0.0.1:9100", "127.0.0.1", "localhost:80", "[::1]:9100", "LOCALHOST"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example:9100", "10.0.0.1:80", "[2001:db8::1]:1", "127.0.0.1.evil.example"] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert!(same(b"secret", b"secret") && !same(b"secret", b"secreT") && !same(b"s", b"secret"));
    }
}
