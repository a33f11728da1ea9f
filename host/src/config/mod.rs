//! Configuration: what `serve`, `connect` and `check` are asked to do, as plain data, and
//! the syntax of every value they take. Imported by every other layer; imports none.
//!
//! - [`units`]: durations, sizes, counts and rates (`off`/`0` is "no limit" everywhere);
//! - [`defaults`]: every default, defined once (clap shows them, `Default`s use them);
//! - [`listen`]: listener addresses;
//! - [`file`]: sidecar `NAME.toml` and `--config FILE`;
//! - [`limits`], [`admission`], [`udp`]: the settings of those layers;
//! - [`hub`]: where hub rooms live (in-process, or over Redis);
//! - [`tls`]: a plugin's certificate, key and client-certificate settings.

pub mod admission;
pub mod defaults;
pub mod file;
pub mod hub;
pub mod limits;
pub mod listen;
pub mod serve_table;
pub mod tls;
pub mod udp;
pub mod units;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use units::Size;

pub use admission::{AdmissionConfig, Cidr};
pub use file::{ConfigError, ConfigProblem, PluginConfig, ServeTable};
pub use hub::{HubBackend, HubUrl, RedisHub};
pub use limits::Limits;
pub use listen::{Listen, ListenError};
pub use tls::{ClientCert, TlsConfig, TlsSettings};
pub use udp::UdpOptions;

/// One `--plugin PATH[@LISTEN,...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// The component file.
    pub path: PathBuf,
    /// Where to serve it; `None` means the plugin's `describe().listen`.
    pub listen: Option<Vec<Listen>>,
}

impl std::str::FromStr for PluginSpec {
    type Err = ListenError;

    /// Parses `PATH[@LISTEN[,LISTEN...]]` (a file whose name holds `@` is taken whole).
    fn from_str(spec: &str) -> Result<Self, ListenError> {
        if Path::new(spec).is_file() {
            return Ok(PluginSpec { path: spec.into(), listen: None });
        }
        match spec.rsplit_once('@') {
            Some((path, list)) => Ok(PluginSpec { path: path.into(), listen: Some(listen::parse_list(list)?) }),
            None => Ok(PluginSpec { path: spec.into(), listen: None }),
        }
    }
}

/// The plugin name for a path: its file stem (`plugins/echo.wasm` → `echo`).
pub fn name_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Why `path` cannot be granted or served as a directory, if it cannot.
pub fn not_a_directory(path: &Path) -> Option<&'static str> {
    match path.is_dir() {
        true => None,
        false if path.exists() => Some("not a directory"),
        false => Some("no such directory"),
    }
}

/// Where the compiled-artifact cache is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheDir {
    /// `$XDG_CACHE_HOME/switchboard`, else `~/.cache/switchboard`.
    Default,
    /// `--cache-dir DIR`.
    At(PathBuf),
    /// `--no-cache`: compile every time.
    Off,
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The plugins to serve.
    pub plugins: Vec<PluginSpec>,
    /// Settings (environment variables) per plugin name.
    pub settings: BTreeMap<String, BTreeMap<String, String>>,
    /// Read-only directory grants per plugin name (`--dir NAME=PATH`).
    pub dirs: BTreeMap<String, PathBuf>,
    /// `--plugins DIR`: serve every `*.wasm` in it, and follow changes.
    pub plugins_dir: Option<PathBuf>,
    /// `--config FILE`: one table per plugin.
    pub config_file: Option<PathBuf>,
    /// How long open connections may run after shutdown begins; `None`: until they end.
    pub drain_timeout: Option<Duration>,
    /// Limits on every connection.
    pub limits: Limits,
    /// Who may connect, and how many at once.
    pub admission: AdmissionConfig,
    /// Settings of every UDP listener.
    pub udp: UdpOptions,
    /// The compiled-artifact cache.
    pub cache: CacheDir,
    /// `--admin ADDR`: where the admin HTTP endpoint listens; `None`: off.
    pub admin: Option<std::net::SocketAddr>,
    /// `--hub`: where hub rooms live.
    pub hub: HubBackend,
    /// The admin endpoint's token, dial rules and getfile client.
    pub admin_options: AdminOptions,
    /// `--record DIR`: each TCP connection's transcript is written there.
    pub record: Option<PathBuf>,
    /// `--tls NAME=CERT,KEY`: the certificate chain and key of plugin NAME's `tls:`
    /// listeners.
    pub tls: BTreeMap<String, (PathBuf, PathBuf)>,
    /// `--proxy-protocol NAME`: plugin NAME's TCP and TLS listeners expect a PROXY header.
    pub proxy_protocol: Vec<String>,
    /// `--proxy-from CIDR`: the sources a PROXY header is accepted from.
    pub proxy_from: Vec<Cidr>,
    /// `--reuse-port`: TCP and UDP listeners set `SO_REUSEPORT`, so another `serve` can
    /// bind the same ports (start the new one, then SIGTERM the old one: it drains).
    pub reuse_port: bool,
    /// `--ipv6-only`: IPv6 listeners take IPv6 only (default: dual-stack).
    pub ipv6_only: bool,
    /// `--user NAME`: the user to become once the listeners are bound.
    pub user: Option<String>,
}

/// How the admin endpoint guards what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminOptions {
    /// `--admin-token-file FILE`: every POST needs `Authorization: Bearer TOKEN` with the
    /// token in this file; a non-loopback `--admin` address needs one.
    pub token_file: Option<PathBuf>,
    /// `--admin-dial-allow CIDR`: where the `/getfile` form may dial besides loopback.
    pub dial_allow: Vec<Cidr>,
    /// `--admin-getfile PATH`: the getfile component the `/getfile` form runs (default:
    /// the served plugin named `getfile`).
    pub getfile: Option<PathBuf>,
    /// `--admin-getfile-max SIZE`: the `/getfile` form stops a transfer that grows past
    /// this (it lands in a temporary directory first).
    pub getfile_max: Size,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions { token_file: None, dial_allow: Vec::new(), getfile: None, getfile_max: defaults::ADMIN_GETFILE_MAX }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            plugins: Vec::new(),
            settings: BTreeMap::new(),
            dirs: BTreeMap::new(),
            plugins_dir: None,
            config_file: None,
            drain_timeout: defaults::DRAIN_TIMEOUT.0,
            limits: Limits::default(),
            admission: AdmissionConfig::default(),
            udp: UdpOptions::default(),
            cache: CacheDir::Default,
            admin: None,
            hub: HubBackend::InProcess,
            admin_options: AdminOptions::default(),
            record: None,
            tls: BTreeMap::new(),
            reuse_port: false,
            ipv6_only: false,
            user: None,
            proxy_protocol: Vec::new(),
            proxy_from: Vec::new(),
        }
    }
}

/// A flag given twice for the same thing. One rule for every repeatable flag: each key
/// once, so no order of flags silently decides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {key} is given twice: give each once")]
pub struct Duplicate {
    /// The flag (`--set`, `--dir`).
    pub flag: &'static str,
    /// What it names twice.
    pub key: String,
}

/// Collects `--set NAME.KEY=VALUE` flags per plugin, refusing a `NAME.KEY` given twice.
pub fn collect_settings(flags: Vec<(String, String, String)>) -> Result<BTreeMap<String, BTreeMap<String, String>>, Duplicate> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (plugin, key, value) in flags {
        let table = out.entry(plugin.clone()).or_default();
        if table.insert(key.clone(), value).is_some() {
            return Err(Duplicate { flag: "--set", key: format!("{plugin}.{key}") });
        }
    }
    Ok(out)
}

/// Collects `KEY=VALUE` flags (`connect --set`), refusing a `KEY` given twice.
pub fn collect_env(flags: Vec<(String, String)>) -> Result<Vec<(String, String)>, Duplicate> {
    let mut seen = HashMap::new();
    for (key, value) in &flags {
        if seen.insert(key.clone(), value.clone()).is_some() {
            return Err(Duplicate { flag: "--set", key: key.clone() });
        }
    }
    Ok(flags)
}

/// Collects `--tls NAME=CERT,KEY` flags, refusing a second certificate for one plugin.
pub fn collect_tls(flags: Vec<(String, PathBuf, PathBuf)>) -> Result<BTreeMap<String, (PathBuf, PathBuf)>, Duplicate> {
    let mut out = BTreeMap::new();
    for (plugin, cert, key) in flags {
        if out.insert(plugin.clone(), (cert, key)).is_some() {
            return Err(Duplicate { flag: "--tls", key: plugin });
        }
    }
    Ok(out)
}

/// Collects `--dir NAME=PATH` flags, refusing a second directory for one plugin.
pub fn collect_dirs(flags: Vec<(String, PathBuf)>) -> Result<BTreeMap<String, PathBuf>, Duplicate> {
    let mut out = BTreeMap::new();
    for (plugin, path) in flags {
        if out.insert(plugin.clone(), path).is_some() {
            return Err(Duplicate { flag: "--dir", key: plugin });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_specs() {
        let spec: PluginSpec = "plugins/echo.wasm@127.0.0.1:0,9000".parse().unwrap();
        assert_eq!(spec.path, PathBuf::from("plugins/echo.wasm"));
        assert_eq!(spec.listen.unwrap().len(), 2);
        assert!("plugins/echo.wasm".parse::<PluginSpec>().unwrap().listen.is_none());
        assert!("x.wasm@nope:port".parse::<PluginSpec>().is_err());
    }

    #[test]
    fn a_repeated_flag_is_refused_the_same_way_everywhere() {
        let set = |p: &str, k: &str, v: &str| (p.to_string(), k.to_string(), v.to_string());
        assert!(collect_settings(vec![set("echo", "PREFIX", "a"), set("chat", "PREFIX", "b")]).is_ok());
        let err = collect_settings(vec![set("echo", "PREFIX", "a"), set("echo", "PREFIX", "b")]).unwrap_err();
        assert_eq!(err.to_string(), "--set echo.PREFIX is given twice: give each once");
        assert!(collect_env(vec![("FILE".into(), "a".into()), ("FILE".into(), "b".into())]).is_err());
        assert!(collect_dirs(vec![("getfile".into(), "a".into()), ("getfile".into(), "b".into())]).is_err());
    }
}
