//! The command line (clap): `serve` and `check`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::admission::{AdmissionConfig, Cidr};
use crate::cache::ArtifactCache;
use crate::limits::Limits;
use crate::listen;
use crate::runtime::RuntimeOptions;
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
    /// Prints one line per bound listener to stdout: `listening NAME tcp://ADDR` (or
    /// `udp://ADDR`, `serial://DEVICE`).
    /// Logs go to stderr (level from RUST_LOG, default info).
    Serve(ServeArgs),
    /// Dial HOST:PORT and run a plugin on the connection (role `dialed`).
    ///
    /// The plugin gets the current directory read-write as `/`, this process's stdin and
    /// stdout, and the --set settings. Exits 0 when it returns ok, non-zero on an error
    /// or trap, with the message.
    Connect(ConnectArgs),
    /// Validate plugin files: which world each satisfies and its describe() info.
    ///
    /// Exits non-zero with a precise reason if any file is not a usable plugin.
    Check(CheckArgs),
}

/// `switchboard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// PATH[@LISTEN[,LISTEN...]]; repeatable. The plugin name is the file stem
    /// (plugins/echo.wasm → echo). LISTEN = PORT | HOST:PORT | tcp:HOST:PORT |
    /// udp:HOST:PORT | serial:DEVICE[:BAUD] (HOST defaults to 127.0.0.1; port 0 picks a
    /// free port; serial lines are 8N1, 9600 baud by default). Without @LISTEN the
    /// plugin's describe().listen is used.
    #[arg(long = "plugin", value_name = "SPEC", value_parser = parse_plugin_spec)]
    pub plugins: Vec<PluginSpec>,

    /// Serve every *.wasm in DIR (with an optional NAME.toml sidecar beside each) and
    /// follow the folder: a new file is a new service, a changed one is swapped in, a
    /// removed one stops accepting.
    #[arg(long = "plugins", value_name = "DIR")]
    pub plugins_dir: Option<PathBuf>,

    /// A TOML file with one table per plugin (path, listen, settings, dir, limits);
    /// followed like the plugins folder.
    #[arg(long = "config", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// NAME.KEY=VALUE: environment variable KEY=VALUE for every instance of plugin NAME;
    /// repeatable.
    #[arg(long = "set", value_name = "NAME.KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String, String)>,

    /// NAME=PATH: plugin NAME sees host directory PATH, read-only, as `/`; nothing else
    /// of the filesystem. Repeatable (one directory per plugin).
    #[arg(long = "dir", value_name = "NAME=PATH", value_parser = parse_dir)]
    pub dirs: Vec<(String, PathBuf)>,

    /// How long in-flight connections may continue after SIGINT/SIGTERM (e.g. 10s, 500ms).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Largest linear memory of one instance (e.g. 64MiB); growth beyond it fails inside
    /// the plugin and ends only that connection.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub memory_limit: usize,

    /// Time a plugin's code may run on one connection (host calls and waiting for I/O
    /// are free; waiting for a core after yielding is not); then it traps. `off` for no
    /// budget.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_optional_duration)]
    pub cpu_budget: OptionalDuration,

    /// Close a connection with no bytes in either direction for this long (slowloris).
    /// `off` to keep idle connections forever.
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_optional_duration)]
    pub idle_timeout: OptionalDuration,

    /// Close every connection after this long, busy or not [default: off].
    #[arg(long, value_name = "DUR", default_value = "off", value_parser = parse_optional_duration)]
    pub max_duration: OptionalDuration,

    /// Most connections open at once, all plugins together; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most connections open at once from one IP address [default: no limit].
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_per_ip: usize,

    /// Most new connections per second from one IP address, e.g. 50/s [default: no limit].
    #[arg(long, value_name = "N/s", default_value = "0", value_parser = parse_rate)]
    pub rate_per_ip: u32,

    /// Admit only addresses in this block (CIDR, e.g. 10.0.0.0/8); repeatable. The most
    /// specific --allow/--deny rule matching an address decides (deny wins a tie).
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<Cidr>,

    /// Refuse addresses in this block (CIDR); repeatable.
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<Cidr>,

    /// UDP: datagrams answered (and replies sent) per second to one peer (IP address,
    /// IPv6 /64), e.g. 100/s; the rest get no answer. Guards against reflection floods.
    #[arg(long, value_name = "N/s", default_value = "100", value_parser = crate::udp::parse_replies_per_peer)]
    pub udp_replies_per_peer: u32,

    /// UDP: the replies to one datagram may total at most N times its size (or 1,200
    /// bytes if that is more); the rest are dropped. `off` for no cap. Guards against
    /// amplification from spoofed sources.
    #[arg(long, value_name = "N", default_value = "3", value_parser = crate::udp::parse_amplification)]
    pub udp_amplification: crate::udp::Amplification,

    /// Compiled-artifact cache location.
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Where compiled components are cached.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Directory of the compiled-artifact cache [default: $XDG_CACHE_HOME/switchboard or
    /// ~/.cache/switchboard].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Compile every plugin afresh; read and write no cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache these flags select.
    pub fn cache(&self) -> ArtifactCache {
        match (&self.cache_dir, self.no_cache) {
            (_, true) => ArtifactCache::disabled(),
            (Some(dir), false) => ArtifactCache::at(dir),
            (None, false) => ArtifactCache::default_dir().map_or_else(ArtifactCache::disabled, ArtifactCache::at),
        }
    }
}

/// `switchboard connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Where to dial (HOST:PORT).
    #[arg(value_name = "HOST:PORT")]
    pub addr: String,

    /// The plugin to run on the connection.
    #[arg(long, value_name = "PATH")]
    pub plugin: PathBuf,

    /// KEY=VALUE: an environment variable of the plugin; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub settings: Vec<(String, String)>,

    /// Compiled-artifact cache location.
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// `switchboard check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Component files to check.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Compiled-artifact cache location.
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl ServeArgs {
    /// The configuration these arguments describe.
    pub fn into_config(self) -> ServeConfig {
        let mut settings: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (plugin, key, value) in self.settings {
            settings.entry(plugin).or_default().push((key, value));
        }
        let runtime = RuntimeOptions { cache: self.cache.cache(), ..RuntimeOptions::default() };
        let limits = Limits {
            memory: self.memory_limit,
            cpu_budget: self.cpu_budget.0,
            idle_timeout: self.idle_timeout.0,
            max_duration: self.max_duration.0,
        };
        let admission = AdmissionConfig {
            max_connections: self.max_connections,
            max_per_ip: self.max_per_ip,
            rate_per_ip: self.rate_per_ip,
            allow: self.allow,
            deny: self.deny,
        };
        ServeConfig {
            plugins: self.plugins,
            settings,
            dirs: self.dirs.into_iter().collect(),
            plugins_dir: self.plugins_dir,
            config_file: self.config_file,
            drain_timeout: self.drain_timeout,
            limits,
            admission,
            udp: crate::udp::UdpOptions { replies_per_peer: self.udp_replies_per_peer, amplification: self.udp_amplification.0 },
            runtime,
        }
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
    let (name, key) =
        target.split_once('.').ok_or_else(|| format!("{s:?}: expected NAME.KEY=VALUE (missing '.' between plugin name and key)"))?;
    if name.is_empty() || key.is_empty() {
        return Err(format!("{s:?}: expected NAME.KEY=VALUE (empty plugin name or key)"));
    }
    Ok((name.to_string(), key.to_string(), value.to_string()))
}

/// Parses `KEY=VALUE` (VALUE may be empty).
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Parses `NAME=PATH`.
pub fn parse_dir(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err(format!("{s:?}: expected NAME=PATH (plugin name, then the directory to grant)")),
    }
}

/// A duration that may be `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalDuration(pub Option<Duration>);

/// Parses a duration, or `off`/`0` for none.
pub fn parse_optional_duration(s: &str) -> Result<OptionalDuration, String> {
    match s.trim() {
        "off" | "none" | "0" => Ok(OptionalDuration(None)),
        other => parse_duration(other).map(|d| OptionalDuration(Some(d))),
    }
}

/// Parses a size: `65536`, `512KiB`, `64MiB`, `1GiB` (also KB/MB/GB, powers of 1000).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: usize = number.parse().map_err(|_| format!("{s:?}: expected a size like 64MiB"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB or GB)")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("{s:?}: too large"))
}

/// Parses a rate `N/s` (or a bare `N`).
pub fn parse_rate(s: &str) -> Result<u32, String> {
    let n = s.trim().strip_suffix("/s").unwrap_or(s.trim());
    n.parse().map_err(|_| format!("{s:?}: expected a rate like 50/s"))
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
        assert_eq!(parse_optional_duration("off").unwrap(), OptionalDuration(None));
        assert_eq!(parse_optional_duration("2s").unwrap(), OptionalDuration(Some(Duration::from_secs(2))));
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("64 parsecs").is_err());
        assert_eq!(parse_rate("50/s").unwrap(), 50);
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
