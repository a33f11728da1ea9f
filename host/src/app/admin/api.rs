//! The JSON API under `/api/`: what is served and what is open, and the operator's
//! actions (close a connection, reload, roll back, pause, resume, drain). Every answer is
//! JSON; a request that cannot be done gets a 4xx `{"error": "..."}` saying why.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{Body, State, json, json_error};
use crate::control::registry::{Change, OperatorError};
use crate::util::error::Chain;

/// Why connections closed from the API are closed (the plugin's close reason).
const CLOSED_BY_ADMIN: &str = "closed by the operator (admin API)";

/// Answers `METHOD /api/REST...`.
pub(super) async fn answer(state: &State, method: &Method, rest: &[&str]) -> Response<Body> {
    let (get, post) = (method == Method::GET || method == Method::HEAD, method == Method::POST);
    let decoded: Vec<String> = match rest.iter().map(|s| percent_decode(s)).collect::<Option<Vec<_>>>() {
        Some(decoded) => decoded,
        None => return json_error(StatusCode::BAD_REQUEST, "the path has a bad %-escape or is not UTF-8".into()),
    };
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["plugins"] if get => json(StatusCode::OK, &plugins(state)),
        ["connections"] if get => json(StatusCode::OK, &connections(state)),
        ["connections", id, "close"] if post => close(state, id),
        ["plugins", name, "reload"] if post => reload(state, name).await,
        ["plugins", name, "rollback"] if post => rollback(state, name).await,
        ["listeners", name, action @ ("pause" | "resume")] if post => pause(state, name, *action == "pause"),
        ["drain"] if post => {
            state.drain.cancel();
            json(
                StatusCode::ACCEPTED,
                &json!({
                    "message": "draining: no new connections; the server exits once the open ones finish (or at its --drain-timeout)"
                }),
            )
        }
        ["plugins" | "connections"] => wrong_method(method, "GET"),
        ["connections", _, "close"] | ["plugins", _, "reload" | "rollback"] | ["listeners", _, "pause" | "resume"] | ["drain"] => {
            wrong_method(method, "POST")
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            format!(
                "no such API endpoint: /api/{} (there are GET /api/plugins, GET /api/connections, POST /api/connections/ID/close, \
                 POST /api/plugins/NAME/reload|rollback, POST /api/listeners/NAME/pause|resume, POST /api/drain)",
                rest.join("/")
            ),
        ),
    }
}

fn wrong_method(method: &Method, allowed: &str) -> Response<Body> {
    let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here; use {allowed}"));
    if let Ok(value) = allowed.parse() {
        response.headers_mut().insert(hyper::header::ALLOW, value);
    }
    response
}

/// Seconds since the Unix epoch.
fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `GET /api/plugins`.
fn plugins(state: &State) -> Value {
    let plugins: Vec<Value> = state
        .registry
        .states()
        .into_iter()
        .map(|p| {
            let current = p.service.current();
            let c = p.service.counters.snapshot();
            json!({
                "name": p.service.name().as_ref(),
                "version": current.info.version,
                "summary": current.info.summary,
                "hash": current.sha256,
                "world": current.world.name(),
                "listeners": p.listeners.iter().map(|l| json!({"listen": l.listen, "url": l.url, "paused": l.paused})).collect::<Vec<_>>(),
                "counters": {
                    "active": p.service.gate.open(),
                    "served": c.served,
                    "errors": c.errors,
                    "traps": c.traps,
                    "limit_hits": c.limit_hits,
                    "host_failures": c.host_failures,
                    "refused": c.refused,
                },
                "quarantined": p.service.quarantine.in_force(),
                "loaded_at": unix(p.since),
                "previous": p.previous.map(|prev| json!({"version": prev.info.version, "hash": prev.sha256})),
            })
        })
        .collect();
    json!({ "plugins": plugins })
}

/// `GET /api/connections`.
fn connections(state: &State) -> Value {
    let mut all: Vec<_> = state.registry.services().iter().flat_map(|s| s.connections.list()).collect();
    all.sort_by_key(|c| c.id);
    let rows: Vec<Value> = all
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "plugin": c.plugin.name.as_ref(),
                "version": c.plugin.info.version,
                "peer": c.peer,
                "transport": c.transport_name(),
                "lane": c.lane(),
                "started_at": unix(c.started),
                "age_seconds": c.started_at.elapsed().as_secs_f64(),
                "bytes_in": c.meters.bytes_in(),
                "bytes_out": c.meters.bytes_out(),
                "cpu_seconds": c.meters.cpu().as_secs_f64(),
                "closing": c.closer.is_closed(),
            })
        })
        .collect();
    json!({ "connections": rows })
}

/// `POST /api/connections/ID/close`.
fn close(state: &State, id: &str) -> Response<Body> {
    let Ok(id) = id.parse::<u64>() else {
        return json_error(StatusCode::BAD_REQUEST, format!("{id:?} is not a connection id (a whole number, from GET /api/connections)"));
    };
    let found = state.registry.services().iter().find_map(|s| s.connections.get(id));
    let Some(connection) = found else {
        return json_error(StatusCode::NOT_FOUND, format!("no open connection has id {id} (it may have ended)"));
    };
    connection.closer.close(CLOSED_BY_ADMIN);
    tracing::info!(plugin = %connection.plugin.name, id, peer = %connection.peer, "closing the connection (admin API)");
    json(
        StatusCode::OK,
        &json!({
            "message": format!("closing connection {id} ({} from {})", connection.plugin.name, connection.peer),
            "id": id,
        }),
    )
}

/// `POST /api/plugins/NAME/reload`: re-reads the configuration file and the plugin's
/// files and applies them, as a change on disk would.
async fn reload(state: &State, name: &str) -> Response<Body> {
    if !state.registry.names().iter().any(|n| n == name) {
        return json_error(StatusCode::NOT_FOUND, format!("no plugin named {name:?} is configured"));
    }
    if let Err(e) = state.registry.reload_config_file() {
        return json_error(StatusCode::UNPROCESSABLE_ENTITY, format!("reload rejected: {}", Chain(&e)));
    }
    match state.registry.apply(name).await {
        Ok(change) => {
            let (word, message) = match change {
                Change::Unchanged => ("unchanged", format!("{name}: its files are as loaded; nothing to do")),
                Change::Loaded => ("loaded", format!("{name}: loaded")),
                Change::Swapped => ("swapped", format!("{name}: swapped; new connections get the version in its file")),
                Change::Removed => ("removed", format!("{name}: its files are gone; it no longer accepts")),
                Change::Rotated => ("rotated", format!("{name}: new TLS files; new handshakes get them")),
                Change::Absent => ("absent", format!("{name}: no file; nothing is served")),
            };
            let version = state.registry.services().iter().find(|s| s.name().as_ref() == name).map(|s| s.current().info.version.clone());
            json(StatusCode::OK, &json!({ "message": message, "change": word, "version": version }))
        }
        Err(e) => {
            json_error(StatusCode::UNPROCESSABLE_ENTITY, format!("reload rejected (the running version keeps serving): {}", Chain(&e)))
        }
    }
}

/// `POST /api/plugins/NAME/rollback`.
async fn rollback(state: &State, name: &str) -> Response<Body> {
    match state.registry.rollback(name).await {
        Ok((from, to)) => json(
            StatusCode::OK,
            &json!({
                "message": format!(
                    "{name}: rolled back from {} ({}) to {} ({}); new connections get it",
                    from.info.version, &from.sha256[..12], to.info.version, &to.sha256[..12]
                ),
                "version": to.info.version,
                "hash": to.sha256,
            }),
        ),
        Err(e) => operator_error(&e),
    }
}

/// `POST /api/listeners/NAME/pause` and `/resume`.
fn pause(state: &State, name: &str, paused: bool) -> Response<Body> {
    match state.registry.set_paused(name, paused) {
        Ok(urls) => {
            let verb = if paused { "paused (new connections are refused; open ones go on)" } else { "resumed" };
            json(StatusCode::OK, &json!({ "message": format!("{}: {verb}", urls.join(", ")), "listeners": urls, "paused": paused }))
        }
        Err(e) => operator_error(&e),
    }
}

fn operator_error(e: &OperatorError) -> Response<Body> {
    let status = match e {
        OperatorError::NoPlugin(_) | OperatorError::NoListener(_) => StatusCode::NOT_FOUND,
        OperatorError::NoPrevious(_) | OperatorError::Unsuitable(_) | OperatorError::SerialOnly(_) => StatusCode::CONFLICT,
    };
    json_error(status, Chain(e).to_string())
}

/// Decodes `%XX` escapes; `None` if one is malformed or the result is not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_bad_ones_are_refused() {
        assert_eq!(percent_decode("tcp:%2F%2F127.0.0.1:5").as_deref(), Some("tcp://127.0.0.1:5"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
