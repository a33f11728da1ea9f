//! Where the hub's rooms live: in this process only (the default), or spread over every
//! host that shares one Redis (`--hub redis://HOST:PORT[/DB]`).

use super::defaults;

/// The hub's backplane: what carries room traffic and presence between hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HubBackend {
    /// Rooms are this process's own (no other host sees them).
    #[default]
    InProcess,
    /// Rooms span every host on the same Redis (or Valkey) server and database.
    Redis(RedisHub),
}

/// `--hub redis://…` with its channel prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisHub {
    /// `redis://HOST:PORT[/DB]`.
    pub url: HubUrl,
    /// What every room's channel and keys start with (`--hub-prefix`).
    pub prefix: String,
}

impl RedisHub {
    /// The backend at `url` with the default prefix.
    pub fn new(url: HubUrl) -> Self {
        RedisHub { url, prefix: defaults::HUB_PREFIX.to_string() }
    }
}

/// A checked `redis://HOST[:PORT][/DB]` address (no user or password: give those in a
/// file later, never on a command line others can read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl(String);

impl HubUrl {
    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HubUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a `--hub` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?}: {why}; expected redis://HOST:PORT[/DB], e.g. redis://127.0.0.1:6379/0")]
pub struct HubUrlError {
    /// The value given.
    pub given: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl<'de> serde::Deserialize<'de> for HubUrl {
    /// From a string, checked as on the command line (`hub = "redis://…"` in `[serve]`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for HubUrl {
    type Err = HubUrlError;

    fn from_str(s: &str) -> Result<Self, HubUrlError> {
        let bad = |why| HubUrlError { given: s.to_string(), why };
        let rest = s.strip_prefix("redis://").ok_or_else(|| bad("only redis:// is supported"))?;
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let port = match authority.rsplit_once(':') {
            // An IPv6 literal without a port: `[::1]`.
            Some((_, p)) if p.ends_with(']') => None,
            Some((host, p)) if !host.is_empty() => Some(p),
            Some(_) => return Err(bad("no host")),
            None => None,
        };
        if port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(bad("the port is not a number from 0 to 65535"));
        }
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(bad("the database is not a number"));
        }
        Ok(HubUrl(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls() {
        for ok in ["redis://127.0.0.1:6379", "redis://localhost:6379/2", "redis://redis", "redis://[::1]:6379/0", "redis://[::1]"] {
            assert_eq!(ok.parse::<HubUrl>().unwrap().as_str(), ok);
        }
        let why = |s: &str| s.parse::<HubUrl>().unwrap_err().why;
        assert_eq!(why("nats://x:4222"), "only redis:// is supported");
        assert_eq!(why("redis://:6379"), "no host");
        assert_eq!(why("redis://h:port"), "the port is not a number from 0 to 65535");
        assert_eq!(why("redis://h:1/x"), "the database is not a number");
        assert_eq!(why("redis://u:p@h:1"), "credentials in the URL are not supported");
        let msg = "x".parse::<HubUrl>().unwrap_err().to_string();
        assert!(msg.contains("expected redis://HOST:PORT[/DB]"), "{msg}");
    }
}
