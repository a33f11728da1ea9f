//! Plugin configuration files: a sidecar `NAME.toml` beside `NAME.wasm`, and `--config
//! FILE` with one table per plugin, in the same shape:
//!
//! ```toml
//! [echo]                      # (in --config only; a sidecar is the table's contents)
//! path = "plugins/echo.wasm"  # --config only; relative to the config file
//! listen = ["tcp:127.0.0.1:0", "udp:127.0.0.1:7007"]
//! dir = "files"               # read-only grant, relative to the file's directory
//! [echo.settings]             # environment variables
//! PREFIX = ""
//! [echo.limits]               # per-plugin overrides of the serve flags
//! memory-limit = "64MiB"
//! cpu-budget = "2s"
//! idle-timeout = "30s"
//! max-duration = "off"
//! max-connections = 100
//! [echo.tls]                  # for tls: listeners (see config::tls)
//! cert = "server.pem"
//! key = "server.key"
//! ```
//!
//! A `--config` file may also have a `[serve]` table of server-wide settings
//! ([`ServeTable`]: `admin = "127.0.0.1:9901"`, `hub = "redis://127.0.0.1:6379"`,
//! `hub-prefix = "switchboard:room:"`), read once at start.
//!
//! Precedence, lowest first: `--config`, the sidecar, the command line (`--set`, `--dir`,
//! `@LISTEN`). Unknown keys are errors, so a typo is reported instead of ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use super::serve_table::{SERVE_TABLE, ServeTable};

use super::limits::{Limits, check_memory_limit};
use super::listen::{Listen, ListenError};
use super::tls::{TlsConfig, TlsConfigProblem};
use super::units::{OptionalDuration, Size, ValueError};

/// One plugin's configuration, as written in a file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginConfig {
    /// The component (only in `--config`).
    pub path: Option<PathBuf>,
    /// Listeners; without them the plugin's `describe().listen` is used.
    pub listen: Option<Vec<String>>,
    /// A directory granted read-only as `/`.
    pub dir: Option<PathBuf>,
    /// Environment variables.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Limit overrides.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Record each TCP connection as a transcript in this directory (as `serve --record`
    /// does for every plugin).
    pub record: Option<PathBuf>,
    /// Certificate and key of its `tls:` listeners, and client certificates.
    pub tls: Option<TlsConfig>,
    /// A line sent to a TCP client refused at admission (limits, rules, a paused
    /// listener) before the close; e.g. `"busy: try again later\r\n"`. Not on TLS
    /// listeners (the client expects a handshake).
    pub busy: Option<String>,
    /// Its TCP and TLS listeners expect a PROXY protocol header (v1 or v2) first, from a
    /// `--proxy-from` source; the real client address is the header's.
    pub proxy_protocol: Option<bool>,
}

/// Per-plugin limit overrides (the serve flags of the same names).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// `--memory-limit`.
    pub memory_limit: Option<String>,
    /// `--cpu-budget`.
    pub cpu_budget: Option<String>,
    /// `--idle-timeout`.
    pub idle_timeout: Option<String>,
    /// `--max-duration`.
    pub max_duration: Option<String>,
    /// `--keepalive`.
    pub keepalive: Option<String>,
    /// The plugin's own connection limit (0: only the global one).
    pub max_connections: Option<usize>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}", path.display())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    #[source]
    pub problem: ConfigProblem,
}

/// What is wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    /// It cannot be read.
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// It is not valid TOML of the expected shape (one line: where, and what).
    #[error("{0}")]
    Syntax(String),
    /// A sidecar names a `path`.
    #[error("`path` belongs in --config files; a sidecar sits beside its .wasm")]
    PathInSidecar,
    /// A `--config` table has no `path`.
    #[error("[{0}] has no `path` to its .wasm")]
    NoPath(String),
    /// A `listen` entry does not parse.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The `[tls]` table is unusable.
    #[error(transparent)]
    Tls(#[from] TlsConfigProblem),
    /// A `limits` value does not parse.
    #[error("limits.{key}")]
    Limit {
        /// The key.
        key: &'static str,
        /// Why.
        #[source]
        source: ValueError,
    },
}

impl ConfigError {
    fn new(path: &Path, problem: ConfigProblem) -> Self {
        ConfigError { path: path.to_path_buf(), problem }
    }
}

/// TOML's error as one line: `line L, column C: message`.
fn syntax(text: &str, e: &toml::de::Error) -> ConfigProblem {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            ConfigProblem::Syntax(format!("line {line}, column {column}: {message}"))
        }
        None => ConfigProblem::Syntax(message),
    }
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, ConfigProblem::Read(e)))?;
    toml::from_str(&text).map_err(|e| ConfigError::new(path, syntax(&text, &e)))
}

impl PluginConfig {
    /// Reads a sidecar file.
    pub fn read_sidecar(path: &Path) -> Result<PluginConfig, ConfigError> {
        let mut config: PluginConfig = read_toml(path)?;
        if config.path.is_some() {
            return Err(ConfigError::new(path, ConfigProblem::PathInSidecar));
        }
        config.resolve_relative(path.parent().unwrap_or(Path::new(".")));
        config.validate().map_err(|p| ConfigError::new(path, p))?;
        Ok(config)
    }

    fn resolve_relative(&mut self, base: &Path) {
        if let Some(dir) = &self.dir {
            self.dir = Some(base.join(dir));
        }
        if let Some(p) = &self.path {
            self.path = Some(base.join(p));
        }
        if let Some(record) = &self.record {
            self.record = Some(base.join(record));
        }
        if let Some(tls) = &mut self.tls {
            tls.resolve_relative(base);
        }
    }

    /// Checks what can be checked without loading the plugin.
    fn validate(&self) -> Result<(), ConfigProblem> {
        self.listens()?;
        self.limits.apply(Limits::default())?;
        // A table without cert and key may get them from `--tls` (checked once merged).
        match self.tls.as_ref().map(TlsConfig::settings) {
            Some(Err(TlsConfigProblem::Incomplete { .. })) | Some(Ok(_)) | None => Ok(()),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// The listeners, parsed.
    pub fn listens(&self) -> Result<Option<Vec<Listen>>, ListenError> {
        self.listen.as_ref().map(|l| l.iter().map(|s| s.parse()).collect()).transpose()
    }

    /// `self` with the fields `over` sets taken from `over`.
    pub fn overridden_by(mut self, over: &PluginConfig) -> PluginConfig {
        if over.path.is_some() {
            self.path = over.path.clone();
        }
        if over.listen.is_some() {
            self.listen = over.listen.clone();
        }
        if over.dir.is_some() {
            self.dir = over.dir.clone();
        }
        if over.record.is_some() {
            self.record = over.record.clone();
        }
        if over.proxy_protocol.is_some() {
            self.proxy_protocol = over.proxy_protocol;
        }
        if over.busy.is_some() {
            self.busy = over.busy.clone();
        }
        if let Some(over) = &over.tls {
            self.tls = Some(self.tls.take().unwrap_or_default().overridden_by(over));
        }
        self.settings.extend(over.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        let (l, o) = (&mut self.limits, &over.limits);
        l.memory_limit = o.memory_limit.clone().or(l.memory_limit.take());
        l.cpu_budget = o.cpu_budget.clone().or(l.cpu_budget.take());
        l.idle_timeout = o.idle_timeout.clone().or(l.idle_timeout.take());
        l.max_duration = o.max_duration.clone().or(l.max_duration.take());
        l.keepalive = o.keepalive.clone().or(l.keepalive.take());
        l.max_connections = o.max_connections.or(l.max_connections);
        self
    }
}

impl LimitsConfig {
    /// `base` with these overrides applied.
    pub fn apply(&self, base: Limits) -> Result<Limits, ConfigProblem> {
        let duration = |key: &'static str, v: &Option<String>, d: Option<std::time::Duration>| match v {
            Some(s) => s.parse::<OptionalDuration>().map(|d| d.0).map_err(|source| ConfigProblem::Limit { key, source }),
            None => Ok(d),
        };
        let memory = match &self.memory_limit {
            Some(s) => {
                s.parse::<Size>().and_then(check_memory_limit).map_err(|source| ConfigProblem::Limit { key: "memory-limit", source })?
            }
            None => base.memory,
        };
        Ok(Limits {
            memory,
            cpu_budget: duration("cpu-budget", &self.cpu_budget, base.cpu_budget)?,
            idle_timeout: duration("idle-timeout", &self.idle_timeout, base.idle_timeout)?,
            max_duration: duration("max-duration", &self.max_duration, base.max_duration)?,
            keepalive: duration("keepalive", &self.keepalive, base.keepalive)?,
        })
    }
}

/// A whole `--config` file: `[serve]` and one table per plugin. Deserialised key by
/// key (not with `#[serde(flatten)]`, which would lose TOML's error positions).
#[derive(Debug, Default)]
struct ConfigFile {
    serve: ServeTable,
    plugins: BTreeMap<String, PluginConfig>,
}

impl<'de> Deserialize<'de> for ConfigFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Tables;
        impl<'de> serde::de::Visitor<'de> for Tables {
            type Value = ConfigFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [serve] table and one table per plugin")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ConfigFile, A::Error> {
                let mut file = ConfigFile::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == SERVE_TABLE {
                        file.serve = map.next_value()?;
                    } else {
                        let plugin = map.next_value()?;
                        file.plugins.insert(key, plugin);
                    }
                }
                Ok(file)
            }
        }
        deserializer.deserialize_map(Tables)
    }
}

/// Reads the `[serve]` table of a `--config` file (empty if it has none).
pub fn read_serve_table(path: &Path) -> Result<ServeTable, ConfigError> {
    read_toml::<ConfigFile>(path).map(|file| file.serve)
}

/// Reads a `--config` file: one table per plugin name (the `[serve]` table is read by
/// [`read_serve_table`]).
pub fn read_config_file(path: &Path) -> Result<BTreeMap<String, PluginConfig>, ConfigError> {
    let mut plugins = read_toml::<ConfigFile>(path)?.plugins;
    let base = path.parent().unwrap_or(Path::new("."));
    for (name, config) in plugins.iter_mut() {
        config.resolve_relative(base);
        if config.path.is_none() {
            return Err(ConfigError::new(path, ConfigProblem::NoPath(name.clone())));
        }
        config.validate().map_err(|p| ConfigError::new(path, p))?;
    }
    Ok(plugins)
}

/// The sidecar of a component: `NAME.toml` beside `NAME.wasm` (other files have none).
pub fn sidecar_of(wasm: &Path) -> Option<PathBuf> {
    wasm.extension().is_some_and(|e| e == "wasm").then(|| wasm.with_extension("toml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::error::Chain;
    use std::time::Duration;

    fn parse(text: &str) -> Result<PluginConfig, String> {
        toml::from_str::<PluginConfig>(text).map_err(|e| syntax(text, &e).to_string())
    }

    #[test]
    fn a_sidecar_parses_and_overrides_in_order() {
        let sidecar = parse(
            r#"
            listen = ["127.0.0.1:0"]
            dir = "files"
            [settings]
            PREFIX = ""
            [limits]
            cpu-budget = "2s"
            max-connections = 5
            "#,
        )
        .unwrap();
        assert_eq!(sidecar.listens().unwrap().unwrap().len(), 1);
        let base = parse("listen = [\"tcp:9\"]\n[settings]\nPREFIX = \"x\"\nOTHER = \"y\"").unwrap();
        let merged = base.overridden_by(&sidecar);
        assert_eq!(merged.listen.as_deref(), Some(&["127.0.0.1:0".to_string()][..]));
        assert_eq!(merged.settings["PREFIX"], "");
        assert_eq!(merged.settings["OTHER"], "y");
        let limits = merged.limits.apply(Limits::default()).unwrap();
        assert_eq!(limits.cpu_budget, Some(Duration::from_secs(2)));
        assert_eq!(limits.memory, Limits::default().memory);
        assert_eq!(merged.limits.max_connections, Some(5));
    }

    #[test]
    fn the_serve_table_is_not_a_plugin_and_errors_keep_their_place() {
        let file: ConfigFile = toml::from_str("[serve]\nadmin = \"127.0.0.1:9901\"\n[echo]\npath = \"echo.wasm\"\n").unwrap();
        assert_eq!(file.serve.admin, Some("127.0.0.1:9901".parse().unwrap()));
        assert_eq!(file.plugins.keys().collect::<Vec<_>>(), ["echo"]);
        let text = "[echo]\npath = \"echo.wasm\"\nlisen = []\n";
        let err = syntax(text, &toml::from_str::<ConfigFile>(text).unwrap_err()).to_string();
        assert!(err.starts_with("line 3, column 1:") && err.contains("unknown field `lisen`"), "{err}");
        let text = "[serve]\nadmn = \"x\"\n";
        let err = syntax(text, &toml::from_str::<ConfigFile>(text).unwrap_err()).to_string();
        assert!(err.starts_with("line 2, column 1:") && err.contains("`admin`"), "{err}");
        let file: ConfigFile = toml::from_str("[serve]\nhub = \"redis://127.0.0.1:6379/1\"\nhub-prefix = \"team:\"\n").unwrap();
        assert_eq!(file.serve.hub.map(|u| u.to_string()).as_deref(), Some("redis://127.0.0.1:6379/1"));
        assert_eq!(file.serve.hub_prefix.as_deref(), Some("team:"));
        let file: ConfigFile = toml::from_str("[serve]\nreuse-port = true\nipv6-only = true\n").unwrap();
        assert_eq!((file.serve.reuse_port, file.serve.ipv6_only), (Some(true), Some(true)));
        let text = "[serve]\nhub = \"nats://x:4222\"\n";
        let err = syntax(text, &toml::from_str::<ConfigFile>(text).unwrap_err()).to_string();
        assert!(err.starts_with("line 2, column 7:") && err.contains("only redis:// is supported"), "{err}");
    }

    #[test]
    fn typos_and_bad_values_are_errors_on_one_line() {
        let err = parse("lisen = []").unwrap_err();
        assert!(err.contains("unknown field") && err.starts_with("line 1, column 1:") && !err.contains('\n'), "{err}");
        assert!(parse("[limits]\ncpu-budgte = \"1s\"").unwrap_err().contains("unknown field"));
        let bad = parse("[limits]\nmemory-limit = \"lots\"").unwrap();
        let err = bad.limits.apply(Limits::default()).unwrap_err();
        assert!(Chain(&err).to_string().starts_with("limits.memory-limit: \"lots\""), "{}", Chain(&err));
        let tiny = parse("[limits]\nmemory-limit = \"64\"").unwrap();
        assert!(Chain(&tiny.limits.apply(Limits::default()).unwrap_err()).to_string().contains("from 1MiB to 4GiB"));
        let bad = parse("listen = [\"tcp:nope\"]").unwrap();
        assert!(bad.listens().is_err());
    }
}
