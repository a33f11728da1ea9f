//! The admin endpoint (`serve --admin ADDR`): a small HTTP/1 server in the host's own
//! runtime (hyper, no framework) with `GET /metrics`, `GET /healthz` and `GET /readyz`.
//! It binds loopback addresses only: nothing it serves needs a token yet, and nothing
//! should be exposed without one.

mod metrics;
mod process;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::registry::Registry;

/// The content type of the metrics exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the admin endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address is not a loopback address.
    #[error("--admin {0}: only a loopback address (127.0.0.1, ::1) may be used: the admin endpoint has no authentication")]
    NotLoopback(SocketAddr),
    /// The address cannot be bound.
    #[error("--admin {0}: cannot listen")]
    Bind(SocketAddr, #[source] std::io::Error),
}

/// Binds `addr`, prints `listening admin http://ADDR` and serves until `stop`.
pub(crate) async fn start(addr: SocketAddr, registry: Arc<Registry>, stop: CancellationToken) -> Result<(), AdminError> {
    if !addr.ip().is_loopback() {
        return Err(AdminError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| AdminError::Bind(addr, e))?;
    let bound = listener.local_addr().map_err(|e| AdminError::Bind(addr, e))?;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening admin http://{bound}");
    let _ = stdout.flush();
    drop(stdout);
    let state = Arc::new(State { metrics: metrics::metrics(registry.clone()), registry });
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
                    async move { Ok::<_, Infallible>(state.answer(&req)) }
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
}

impl State {
    /// The response to `req`.
    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", format!("{} is not allowed here; use GET\n", req.method()));
        }
        match req.uri().path() {
            "/metrics" => reply(StatusCode::OK, OPENMETRICS, metrics::render(&self.metrics)),
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" => match self.not_ready() {
                None => reply(StatusCode::OK, "text/plain", "ready\n".into()),
                Some(reason) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("not ready: {reason}\n")),
            },
            path => reply(StatusCode::NOT_FOUND, "text/plain", format!("no such endpoint: {path} (try /metrics, /healthz, /readyz)\n")),
        }
    }

    /// Why the host is not ready; see [`Registry::not_ready`].
    fn not_ready(&self) -> Option<String> {
        self.registry.not_ready()
    }
}

/// A response with `body`.
fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
