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
//! ```
//!
//! Precedence, lowest first: `--config`, the sidecar, the command line (`--set`, `--dir`,
//! `@LISTEN`). Unknown keys are errors, so a typo is reported instead of ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{parse_optional_duration, parse_size};
use crate::limits::Limits;
use crate::listen::{self, Listen};

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
    /// The plugin's own connection limit (0 = only the global one).
    pub max_connections: Option<usize>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl PluginConfig {
    /// Reads a sidecar file.
    pub fn read_sidecar(path: &Path) -> Result<PluginConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError { path: path.into(), reason: e.to_string() })?;
        let mut config: PluginConfig = toml::from_str(&text).map_err(|e| ConfigError { path: path.into(), reason: e.to_string() })?;
        if config.path.is_some() {
            return Err(ConfigError {
                path: path.into(),
                reason: "`path` belongs in --config files; a sidecar sits beside its .wasm".into(),
            });
        }
        config.resolve_relative(path.parent().unwrap_or(Path::new(".")));
        config.validate(path)?;
        Ok(config)
    }

    fn resolve_relative(&mut self, base: &Path) {
        if let Some(dir) = &self.dir {
            self.dir = Some(base.join(dir));
        }
        if let Some(p) = &self.path {
            self.path = Some(base.join(p));
        }
    }

    /// Checks what can be checked without loading the plugin.
    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let err = |reason: String| ConfigError { path: file.into(), reason };
        self.listens().map_err(|e| err(e.to_string()))?;
        self.limits.apply(Limits::default()).map_err(err)?;
        Ok(())
    }

    /// The listeners, parsed.
    pub fn listens(&self) -> Result<Option<Vec<Listen>>, listen::ListenError> {
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
        self.settings.extend(over.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        let (l, o) = (&mut self.limits, &over.limits);
        l.memory_limit = o.memory_limit.clone().or(l.memory_limit.take());
        l.cpu_budget = o.cpu_budget.clone().or(l.cpu_budget.take());
        l.idle_timeout = o.idle_timeout.clone().or(l.idle_timeout.take());
        l.max_duration = o.max_duration.clone().or(l.max_duration.take());
        l.max_connections = o.max_connections.or(l.max_connections);
        self
    }
}

impl LimitsConfig {
    /// `base` with these overrides applied.
    pub fn apply(&self, base: Limits) -> Result<Limits, String> {
        let duration = |v: &Option<String>, d: Option<std::time::Duration>| -> Result<_, String> {
            Ok(match v {
                Some(s) => parse_optional_duration(s)?.0,
                None => d,
            })
        };
        Ok(Limits {
            memory: match &self.memory_limit {
                Some(s) => parse_size(s)?,
                None => base.memory,
            },
            cpu_budget: duration(&self.cpu_budget, base.cpu_budget)?,
            idle_timeout: duration(&self.idle_timeout, base.idle_timeout)?,
            max_duration: duration(&self.max_duration, base.max_duration)?,
        })
    }
}

/// Reads a `--config` file: one table per plugin name.
pub fn read_config_file(path: &Path) -> Result<BTreeMap<String, PluginConfig>, ConfigError> {
    let err = |reason: String| ConfigError { path: path.into(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut plugins: BTreeMap<String, PluginConfig> = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for (name, config) in plugins.iter_mut() {
        config.resolve_relative(base);
        if config.path.is_none() {
            return Err(err(format!("[{name}] has no `path` to its .wasm")));
        }
        config.validate(path)?;
    }
    Ok(plugins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<PluginConfig, String> {
        toml::from_str::<PluginConfig>(text).map_err(|e| e.to_string())
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
    fn typos_and_bad_values_are_errors() {
        assert!(parse("lisen = []").unwrap_err().contains("unknown field"));
        assert!(parse("[limits]\ncpu-budgte = \"1s\"").unwrap_err().contains("unknown field"));
        let bad = parse("[limits]\nmemory-limit = \"lots\"").unwrap();
        assert!(bad.limits.apply(Limits::default()).is_err());
        let bad = parse("listen = [\"tcp:nope\"]").unwrap();
        assert!(bad.listens().is_err());
    }
}
