//! The command line (clap): `serve` and `check`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::listen;
use crate::serve::{PluginSpec, ServeConfig};

/// switchboard: every connection's byte stream handed to its own sandboxed WebAssembly
/// component.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve plugins on their listeners until SIGINT/SIGTERM.
    ///
    /// Prints one line per bound listener to stdout: `listening NAME tcp://ADDR`.
    /// Logs go to stderr (level from RUST_LOG, default info).
    Serve(ServeArgs),
    /// Validate plugin files: which world each satisfies and its describe() info.
    ///
    /// Exits non-zero with a precise reason if any file is not a usable plugin.
    Check(CheckArgs),
}

/// `switchboard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// PATH[@LISTEN[,LISTEN...]]; repeatable. The plugin name is the file stem
    /// (plugins/echo.wasm → echo). LISTEN = PORT | HOST:PORT | tcp:HOST:PORT (HOST defaults
    /// to 127.0.0.1; port 0 picks a free port). Without @LISTEN the plugin's
    /// describe().listen is used.
    #[arg(long = "plugin", value_name = "SPEC", value_parser = parse_plugin_spec)]
    pub plugins: Vec<PluginSpec>,

    /// NAME.KEY=VALUE: environment variable KEY=VALUE for every instance of plugin NAME;
    /// repeatable.
    #[arg(long = "set", value_name = "NAME.KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String, String)>,

    /// How long in-flight connections may continue after SIGINT/SIGTERM (e.g. 10s, 500ms).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

/// `switchboard check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Component files to check.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

impl ServeArgs {
    /// The configuration these arguments describe.
    pub fn into_config(self) -> ServeConfig {
        let mut settings: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (plugin, key, value) in self.settings {
            settings.entry(plugin).or_default().push((key, value));
        }
        ServeConfig { plugins: self.plugins, settings, drain_timeout: self.drain_timeout, ..Default::default() }
    }
}

/// Parses `PATH[@LISTEN[,LISTEN...]]`.
pub fn parse_plugin_spec(spec: &str) -> Result<PluginSpec, String> {
    if std::path::Path::new(spec).is_file() {
        return Ok(PluginSpec { path: spec.into(), listen: None });
    }
    match spec.rsplit_once('@') {
        Some((path, list)) => {
            let listen = listen::parse_list(list).map_err(|e| e.to_string())?;
            Ok(PluginSpec { path: path.into(), listen: Some(listen) })
        }
        None => Ok(PluginSpec { path: spec.into(), listen: None }),
    }
}

/// Parses `NAME.KEY=VALUE` (VALUE may be empty).
pub fn parse_setting(s: &str) -> Result<(String, String, String), String> {
    let (target, value) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME.KEY=VALUE (missing '=')"))?;
    let (name, key) = target.split_once('.').ok_or_else(|| format!("{s:?}: expected NAME.KEY=VALUE (missing '.' between plugin name and key)"))?;
    if name.is_empty() || key.is_empty() {
        return Err(format!("{s:?}: expected NAME.KEY=VALUE (empty plugin name or key)"));
    }
    Ok((name.to_string(), key.to_string(), value.to_string()))
}

/// Parses `500ms`, `10s`, `2m`, `1h` (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("{s:?}: expected a duration like 500ms, 10s, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_durations() {
        assert_eq!(parse_setting("echo.PREFIX=").unwrap(), ("echo".into(), "PREFIX".into(), "".into()));
        assert_eq!(parse_setting("chat.GREETING=a=b").unwrap().2, "a=b");
        assert!(parse_setting("PREFIX=x").unwrap_err().contains("missing '.'"));
        assert!(parse_setting("echo.PREFIX").unwrap_err().contains("missing '='"));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn plugin_specs() {
        let spec = parse_plugin_spec("plugins/echo.wasm@127.0.0.1:0,9000").unwrap();
        assert_eq!(spec.path, PathBuf::from("plugins/echo.wasm"));
        assert_eq!(spec.listen.unwrap().len(), 2);
        assert!(parse_plugin_spec("plugins/echo.wasm").unwrap().listen.is_none());
        assert!(parse_plugin_spec("x.wasm@nope:port").is_err());
    }
}
