//! `switchboard serve`'s flags, and the [`ServeConfig`] they make.

use std::path::PathBuf;

use clap::Args;
use switchboard::config::units::{Amplification, AtLeastOne, Count, OptionalDuration, Rate, RepliesPerPeer, Size, ValueError};
use switchboard::config::{
    AdminOptions, AdmissionConfig, Cidr, Duplicate, HubBackend, HubUrl, Limits, PluginSpec, RedisHub, ServeConfig, UdpOptions,
    collect_dirs, collect_settings, collect_tls, defaults, limits::check_memory_limit,
};

use super::CacheArgs;

/// `switchboard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// PATH[@LISTEN[,LISTEN...]]; repeatable. The plugin name is the file stem
    /// (plugins/echo.wasm → echo). LISTEN = PORT | HOST:PORT | tcp:HOST:PORT |
    /// tls:HOST:PORT | udp:HOST:PORT | serial:DEVICE[:BAUD] (HOST defaults to 127.0.0.1;
    /// port 0 picks a free port; serial lines are 8N1, 9600 baud by default; tls needs
    /// --tls NAME=CERT,KEY or a [tls] table). Without @LISTEN the plugin's
    /// describe().listen is used.
    #[arg(long = "plugin", value_name = "SPEC")]
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
    /// repeatable, each NAME.KEY once.
    #[arg(long = "set", value_name = "NAME.KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String, String)>,

    /// NAME=PATH: plugin NAME sees host directory PATH, read-only, as `/`; nothing else
    /// of the filesystem. Repeatable, one directory per plugin.
    #[arg(long = "dir", value_name = "NAME=PATH", value_parser = parse_dir)]
    pub dirs: Vec<(String, PathBuf)>,

    /// NAME=CERT,KEY: plugin NAME's tls: listeners present the certificate chain in PEM
    /// file CERT (leaf first) with the private key in PEM file KEY. Both files are
    /// followed: new handshakes get a new certificate as soon as it is written (SIGHUP
    /// re-reads them too), open connections keep theirs. Client certificates, the
    /// handshake timeout: the plugin's [tls] table (sidecar or --config).
    #[arg(long = "tls", value_name = "NAME=CERT,KEY", value_parser = parse_tls)]
    pub tls: Vec<(String, PathBuf, PathBuf)>,

    /// Plugin NAME's TCP and TLS listeners expect a PROXY protocol header (v1 or v2, as
    /// HAProxy sends it) before the client's bytes, from a --proxy-from source; the
    /// plugin's peer, the per-IP limits, the address rules and the logs all use the
    /// client address in the header. Repeatable; a sidecar says `proxy-protocol = true`.
    #[arg(long = "proxy-protocol", value_name = "NAME")]
    pub proxy_protocol: Vec<String>,

    /// Where PROXY headers are accepted from (the load balancers), e.g. 10.0.0.0/8;
    /// repeatable. A connection to a PROXY-protocol listener from anywhere else is
    /// refused. Needed by --proxy-protocol.
    #[arg(long = "proxy-from", value_name = "CIDR")]
    pub proxy_from: Vec<Cidr>,

    /// How long open connections may continue after SIGINT/SIGTERM (e.g. 10s, 500ms);
    /// `off`: until they end.
    #[arg(long, value_name = "DUR", default_value_t = defaults::DRAIN_TIMEOUT)]
    pub drain_timeout: OptionalDuration,

    /// Largest linear memory of one instance (1MiB to 4GiB, e.g. 64MiB); growth beyond it
    /// fails inside the plugin and ends only that connection.
    #[arg(long, value_name = "SIZE", default_value_t = defaults::MEMORY_LIMIT, value_parser = parse_memory_limit)]
    pub memory_limit: Size,

    /// CPU one connection may use: the plugin's code and the host's work in its calls
    /// (calls that move the connection's bytes, and waiting for I/O, are free; waiting
    /// for a core after yielding is not); then it traps.
    #[arg(long, value_name = "DUR", default_value_t = defaults::CPU_BUDGET)]
    pub cpu_budget: OptionalDuration,

    /// Close a connection with no bytes in either direction for this long (slowloris).
    #[arg(long, value_name = "DUR", default_value_t = defaults::IDLE_TIMEOUT)]
    pub idle_timeout: OptionalDuration,

    /// Close every connection after this long, busy or not.
    #[arg(long, value_name = "DUR", default_value_t = defaults::MAX_DURATION)]
    pub max_duration: OptionalDuration,

    /// TCP keepalive: after this long without traffic the kernel probes the peer (then at
    /// this interval), so a vanished client is noticed even with --idle-timeout off (a
    /// quiet chat room); `off`: no probes.
    #[arg(long, value_name = "DUR", default_value_t = defaults::KEEPALIVE)]
    pub keepalive: OptionalDuration,

    /// Most connections open at once, all plugins together (at least 1: it sizes the
    /// instance pool); more are closed at once.
    #[arg(long, value_name = "N", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: AtLeastOne,

    /// Most connections open at once from one IP address.
    #[arg(long, value_name = "N", default_value_t = defaults::MAX_PER_IP)]
    pub max_per_ip: Count,

    /// Most new connections per second from one IP address, e.g. 50/s.
    #[arg(long, value_name = "N/s", default_value_t = defaults::RATE_PER_IP)]
    pub rate_per_ip: Rate,

    /// Admit only addresses in this block (CIDR, e.g. 10.0.0.0/8); repeatable. The most
    /// specific --allow/--deny rule matching an address decides (deny wins a tie).
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<Cidr>,

    /// Refuse addresses in this block (CIDR); repeatable.
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<Cidr>,

    /// UDP: datagrams answered (and replies sent) per second to one peer (IP address,
    /// IPv6 /64), at least 1; the rest get no answer. Guards against reflection floods.
    #[arg(long, value_name = "N/s", default_value_t = defaults::UDP_REPLIES_PER_PEER)]
    pub udp_replies_per_peer: RepliesPerPeer,

    /// UDP: the replies to one datagram may total at most N times its size (or 1,200
    /// bytes if that is more); the rest are dropped. `off` for no cap. Guards against
    /// amplification from spoofed sources.
    #[arg(long, value_name = "N", default_value_t = defaults::UDP_AMPLIFICATION)]
    pub udp_amplification: Amplification,

    /// Serve the admin HTTP endpoint (/metrics, /healthz, /readyz, /api/..., the status
    /// page at /, the /getfile form) on ADDR, e.g. 127.0.0.1:9100 (port 0 picks a free
    /// port). A non-loopback address needs --admin-token-file. Prints `listening admin
    /// http://ADDR`. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<std::net::SocketAddr>,

    /// The admin token: every POST to the admin endpoint then needs `Authorization:
    /// Bearer TOKEN` (the file's contents, without surrounding whitespace).
    #[arg(long, value_name = "FILE", requires = "admin")]
    pub admin_token_file: Option<PathBuf>,

    /// Where the /getfile form may dial besides loopback (CIDR); repeatable.
    #[arg(long, value_name = "CIDR", requires = "admin")]
    pub admin_dial_allow: Vec<Cidr>,

    /// The getfile component the /getfile form runs [default: the served plugin named
    /// getfile].
    #[arg(long, value_name = "PATH", requires = "admin")]
    pub admin_getfile: Option<PathBuf>,

    /// The largest file the /getfile form fetches: it lands in a temporary directory
    /// before the browser gets it, and a transfer growing past this is stopped (413).
    #[arg(long, value_name = "SIZE", default_value_t = defaults::ADMIN_GETFILE_MAX, requires = "admin")]
    pub admin_getfile_max: Size,

    /// Spread hub rooms over every host on this Redis (or Valkey) server, e.g.
    /// redis://127.0.0.1:6379/0: a message published on one host reaches the room's
    /// members on all of them, and `count`/`names` (chat's /who) cover all hosts. Serves
    /// local rooms while Redis is unreachable and connects when it is back. Default: the
    /// rooms are this process's own.
    #[arg(long, value_name = "redis://HOST:PORT[/DB]")]
    pub hub: Option<HubUrl>,

    /// What the Redis channels and keys of hub rooms start with (hosts sharing a room
    /// must use the same prefix).
    #[arg(long, value_name = "PREFIX", default_value = defaults::HUB_PREFIX, requires = "hub")]
    pub hub_prefix: String,

    /// Set SO_REUSEPORT on every TCP and UDP listener, so a second `serve` can bind the
    /// same ports while this one runs (the zero-downtime upgrade: start the new process,
    /// then SIGTERM the old one, which drains). Both must be started with it.
    #[arg(long)]
    pub reuse_port: bool,

    /// A listener on an IPv6 address (`[::]:PORT`) takes IPv6 clients only. Without it
    /// such a listener is dual-stack (IPv4 clients arrive as ::ffff:a.b.c.d), whatever the
    /// host's net.ipv6.bindv6only says.
    #[arg(long)]
    pub ipv6_only: bool,

    /// Become this user (and its group) once the listeners named at start are bound, so
    /// ports below 1024 need root only to bind. Needs root. Plugin files, the plugins
    /// folder and the cache directory must be readable (the cache writable) by that user
    /// for reloads; a listener added later binds as that user.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Record each TCP connection's bytes both ways as a transcript,
    /// DIR/PLUGIN-ID.transcript, that `switchboard test` replays (DIR is created).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// Compiled-artifact cache location.
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl ServeArgs {
    /// The configuration these arguments describe.
    pub fn into_config(self) -> Result<ServeConfig, Duplicate> {
        Ok(ServeConfig {
            settings: collect_settings(self.settings)?,
            dirs: collect_dirs(self.dirs)?,
            tls: collect_tls(self.tls)?,
            proxy_protocol: self.proxy_protocol,
            proxy_from: self.proxy_from,
            plugins: self.plugins,
            plugins_dir: self.plugins_dir,
            config_file: self.config_file,
            drain_timeout: self.drain_timeout.0,
            limits: Limits {
                memory: self.memory_limit.0,
                cpu_budget: self.cpu_budget.0,
                idle_timeout: self.idle_timeout.0,
                max_duration: self.max_duration.0,
                keepalive: self.keepalive.0,
            },
            admission: AdmissionConfig {
                max_connections: self.max_connections.0,
                max_per_ip: self.max_per_ip.0,
                rate_per_ip: self.rate_per_ip.0,
                allow: self.allow,
                deny: self.deny,
            },
            udp: UdpOptions { replies_per_peer: self.udp_replies_per_peer.0, amplification: self.udp_amplification.0 },
            cache: self.cache.cache(),
            admin: self.admin,
            hub: match self.hub {
                None => HubBackend::InProcess,
                Some(url) => HubBackend::Redis(RedisHub { prefix: self.hub_prefix, ..RedisHub::new(url) }),
            },
            record: self.record,
            reuse_port: self.reuse_port,
            ipv6_only: self.ipv6_only,
            user: self.user,
            admin_options: AdminOptions {
                token_file: self.admin_token_file,
                dial_allow: self.admin_dial_allow,
                getfile: self.admin_getfile,
                getfile_max: self.admin_getfile_max,
            },
        })
    }
}

/// Parses a memory limit and checks its range.
fn parse_memory_limit(s: &str) -> Result<Size, ValueError> {
    s.parse::<Size>().and_then(check_memory_limit).map(Size)
}

/// Parses `NAME.KEY=VALUE` (VALUE may be empty).
fn parse_setting(s: &str) -> Result<(String, String, String), String> {
    let (target, value) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME.KEY=VALUE (missing '=')"))?;
    let (name, key) =
        target.split_once('.').ok_or_else(|| format!("{s:?}: expected NAME.KEY=VALUE (missing '.' between plugin name and key)"))?;
    if name.is_empty() || key.is_empty() {
        return Err(format!("{s:?}: expected NAME.KEY=VALUE (empty plugin name or key)"));
    }
    Ok((name.to_string(), key.to_string(), value.to_string()))
}

/// Parses `NAME=CERT,KEY`.
fn parse_tls(s: &str) -> Result<(String, PathBuf, PathBuf), String> {
    let expected = || format!("{s:?}: expected NAME=CERT,KEY (plugin name, then the PEM certificate chain and key files)");
    let (name, files) = s.split_once('=').ok_or_else(expected)?;
    let (cert, key) = files.split_once(',').ok_or_else(expected)?;
    if name.is_empty() || cert.is_empty() || key.is_empty() {
        return Err(expected());
    }
    Ok((name.to_string(), PathBuf::from(cert), PathBuf::from(key)))
}

/// Parses `NAME=PATH`.
fn parse_dir(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err(format!("{s:?}: expected NAME=PATH (plugin name, then the directory to grant)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;

    #[test]
    fn settings_parse() {
        assert_eq!(parse_setting("echo.PREFIX=").unwrap(), ("echo".into(), "PREFIX".into(), "".into()));
        assert_eq!(parse_setting("chat.GREETING=a=b").unwrap().2, "a=b");
        assert!(parse_setting("PREFIX=x").unwrap_err().contains("missing '.'"));
        assert!(parse_setting("echo.PREFIX").unwrap_err().contains("missing '='"));
        assert!(parse_memory_limit("64").unwrap_err().to_string().contains("from 1MiB to 4GiB"));
        assert_eq!(parse_tls("echo=a.pem,a.key").unwrap(), ("echo".into(), "a.pem".into(), "a.key".into()));
        assert!(parse_tls("echo=a.pem").unwrap_err().contains("expected NAME=CERT,KEY"));
        assert!(parse_tls("a.pem,a.key").is_err());
    }

    /// Every default is shown once, in the form the flag takes.
    #[test]
    fn help_shows_each_default_once() {
        let mut serve = Cli::command().find_subcommand("serve").unwrap().clone();
        let help = serve.render_long_help().to_string();
        for flag in
            ["--drain-timeout", "--memory-limit", "--cpu-budget", "--idle-timeout", "--max-duration", "--max-per-ip", "--rate-per-ip"]
        {
            let at = help.find(&format!("{flag} <")).unwrap_or_else(|| panic!("{flag} in:\n{help}"));
            let next = help[at + 2..].find("\n      --").map_or(help.len(), |i| at + 2 + i);
            assert_eq!(help[at..next].matches("[default:").count(), 1, "{flag}:\n{}", &help[at..next]);
        }
        assert!(help.contains("[default: 10s]") && help.contains("[default: 64MiB]") && help.contains("[default: 5m]"), "{help}");
    }
}
