//! `switchboard status`: the seeds' remote `w`/`ps`, read from a running server's admin
//! API. A plain HTTP/1.1 request over a TCP stream (one request per connection); the
//! answers are JSON, shown as tables.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where `status` looks for the admin endpoint unless `--admin` says otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9100";

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read (a table of many thousand connections fits).
const MAX_ANSWER: u64 = 64 << 20;

/// What `status` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The plugins table.
    Ps,
    /// The connections table.
    W,
    /// Close a connection by id.
    Close(u64),
    /// Reload a plugin from its files.
    Reload(String),
    /// Put a plugin's previous version back.
    Rollback(String),
    /// Pause a plugin's listeners (or one listener).
    Pause(String),
    /// Resume them.
    Resume(String),
    /// Drain the server and let it exit.
    Drain,
}

/// Why `status` failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The token file cannot be read.
    #[error("--admin-token-file {}: cannot read it", path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nothing answers at the address.
    #[error("cannot reach the admin endpoint at {addr} (is `serve --admin {addr}` running? give its address with --admin)")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed half-way.
    #[error("admin endpoint {addr}: {what}")]
    Exchange {
        /// The address.
        addr: String,
        /// What went wrong.
        what: String,
    },
    /// The server refused the request; its reason.
    #[error("admin endpoint {addr} answered {status}: {error}")]
    Refused {
        /// The address.
        addr: String,
        /// The HTTP status.
        status: u16,
        /// The server's `error`.
        error: String,
    },
}

/// Runs `action` (default: both tables) against the admin endpoint at `addr`; returns
/// what to print.
pub async fn status(addr: &str, token_file: Option<&Path>, action: Option<Action>) -> Result<String, StatusError> {
    let token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| StatusError::Token { path: path.to_path_buf(), source })?.trim().to_string(),
        ),
        None => None,
    };
    // As the `listening admin http://ADDR` line prints it, or bare.
    let addr = addr.strip_prefix("http://").unwrap_or(addr).trim_end_matches('/');
    let client = Client { addr, token: token.as_deref() };
    let post = |path: String| async move {
        let answer = client.request("POST", &path).await?;
        Ok::<_, StatusError>(format!("{}\n", answer.get("message").and_then(Value::as_str).unwrap_or("done")))
    };
    match action {
        None => {
            let plugins = client.request("GET", "/api/plugins").await?;
            let connections = client.request("GET", "/api/connections").await?;
            Ok(format!("{}\n{}", ps(&plugins), w(&connections)))
        }
        Some(Action::Ps) => Ok(ps(&client.request("GET", "/api/plugins").await?)),
        Some(Action::W) => Ok(w(&client.request("GET", "/api/connections").await?)),
        Some(Action::Close(id)) => post(format!("/api/connections/{id}/close")).await,
        Some(Action::Reload(name)) => post(format!("/api/plugins/{}/reload", escape(&name))).await,
        Some(Action::Rollback(name)) => post(format!("/api/plugins/{}/rollback", escape(&name))).await,
        Some(Action::Pause(name)) => post(format!("/api/listeners/{}/pause", escape(&name))).await,
        Some(Action::Resume(name)) => post(format!("/api/listeners/{}/resume", escape(&name))).await,
        Some(Action::Drain) => post("/api/drain".to_string()).await,
    }
}

/// Percent-escapes what a path segment cannot hold as it is (`/` of a listener URL).
fn escape(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// One admin endpoint, and the token to show it.
#[derive(Clone, Copy)]
struct Client<'a> {
    addr: &'a str,
    token: Option<&'a str>,
}

impl Client<'_> {
    /// `METHOD PATH`; the JSON answer of a 2xx, else the server's error.
    async fn request(&self, method: &str, path: &str) -> Result<Value, StatusError> {
        let exchange = |what: String| StatusError::Exchange { addr: self.addr.to_string(), what };
        let raw = tokio::time::timeout(TIMEOUT, self.exchange(method, path))
            .await
            .map_err(|_| exchange(format!("no answer within {TIMEOUT:?}")))??;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| exchange("the answer is not HTTP".into()))?;
        let status: u16 =
            head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| exchange(format!("no status in {:?}", first_line(head))))?;
        let json: Option<Value> = serde_json::from_str(body).ok();
        if !(200..300).contains(&status) {
            let error =
                json.as_ref().and_then(|j| j.get("error")).and_then(Value::as_str).map_or_else(|| body.trim().to_string(), String::from);
            return Err(StatusError::Refused { addr: self.addr.to_string(), status, error });
        }
        json.ok_or_else(|| exchange(format!("{method} {path}: the answer is not JSON")))
    }

    async fn exchange(&self, method: &str, path: &str) -> Result<Vec<u8>, StatusError> {
        let io = |e: std::io::Error| StatusError::Exchange { addr: self.addr.to_string(), what: e.to_string() };
        let mut stream =
            TcpStream::connect(self.addr).await.map_err(|source| StatusError::Connect { addr: self.addr.to_string(), source })?;
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n", self.addr);
        if let Some(token) = self.token {
            let _ = write!(request, "Authorization: Bearer {token}\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut raw).await.map_err(io)?;
        Ok(raw)
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// The plugins table (`ps`).
pub fn ps(plugins: &Value) -> String {
    let mut rows = vec![
        [
            "PLUGIN",
            "VERSION",
            "HASH",
            "WORLD",
            "LISTENERS",
            "ACTIVE",
            "SERVED",
            "REFUSED",
            "ERRORS",
            "TRAPS",
            "LIMITS",
            "QUARANTINE",
            "PREVIOUS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in plugins.get("plugins").and_then(Value::as_array).into_iter().flatten() {
        let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let count = |k: &str| p.get("counters").and_then(|c| c.get(k)).and_then(Value::as_u64).map_or("-".into(), |n| n.to_string());
        let listeners: Vec<String> = p
            .get("listeners")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|l| {
                let url = l.get("url").and_then(Value::as_str).unwrap_or("?");
                if l.get("paused").and_then(Value::as_bool) == Some(true) { format!("{url}(paused)") } else { url.to_string() }
            })
            .collect();
        let hash = text("hash");
        let previous = match p.get("previous") {
            Some(Value::Object(prev)) => format!(
                "{} {}",
                prev.get("version").and_then(Value::as_str).unwrap_or("?"),
                prev.get("hash").and_then(Value::as_str).map_or("?", |h| &h[..h.len().min(12)])
            ),
            _ => "-".into(),
        };
        rows.push(vec![
            text("name"),
            text("version"),
            hash[..hash.len().min(12)].to_string(),
            text("world"),
            listeners.join(","),
            count("active"),
            count("served"),
            count("refused"),
            count("errors"),
            count("traps"),
            count("limit_hits"),
            if p.get("quarantined").and_then(Value::as_bool) == Some(true) { "yes".into() } else { "no".into() },
            previous,
        ]);
    }
    table(&rows)
}

/// The connections table (`w`).
pub fn w(connections: &Value) -> String {
    let mut rows = vec![["ID", "PLUGIN", "VERSION", "PEER", "TRANSPORT", "LANE", "AGE", "IN", "OUT", "CPU"].map(String::from).to_vec()];
    for c in connections.get("connections").and_then(Value::as_array).into_iter().flatten() {
        let text = |k: &str| c.get(k).map_or("-".into(), |v| v.as_str().map_or_else(|| v.to_string(), String::from));
        let secs = |k: &str| c.get(k).and_then(Value::as_f64).map_or("-".into(), seconds);
        rows.push(vec![
            text("id"),
            text("plugin"),
            text("version"),
            text("peer"),
            text("transport"),
            text("lane"),
            secs("age_seconds"),
            text("bytes_in"),
            text("bytes_out"),
            secs("cpu_seconds"),
        ]);
    }
    table(&rows)
}

/// A duration in seconds as people read it: `850µs`, `12.3ms`, `4.2s`, `3m07s`.
fn seconds(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = s as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..columns).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_and_show_what_the_api_says() {
        let connections = serde_json::json!({"connections": [
            {"id": 7, "plugin": "echo", "version": "0.1.0", "peer": "127.0.0.1:40000", "transport": "tcp", "lane": "light",
             "age_seconds": 75.5, "bytes_in": 5, "bytes_out": 12, "cpu_seconds": 0.0004}
        ]});
        let out = w(&connections);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("ID  PLUGIN  VERSION  PEER "), "{out}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["7", "echo", "0.1.0", "127.0.0.1:40000", "tcp", "light", "1m15s", "5", "12", "400µs"]
        );
        assert_eq!(lines[0].find("PEER"), lines[1].find("127.0.0.1"), "{out}");
        assert_eq!(escape("tcp://127.0.0.1:5"), "tcp:%2F%2F127.0.0.1:5");
    }
}
