//! The `[serve]` table of a `--config` file: the server-wide settings beside the plugins'
//! tables.

use serde::Deserialize;

/// The name of the `--config` table that holds server-wide settings, not a plugin.
pub const SERVE_TABLE: &str = "serve";

/// The `[serve]` table of a `--config` file: server-wide settings, read once at start.
/// A flag given on the command line wins over it; a change takes effect at the next
/// start (a SIGHUP or a watched change says so in the log).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeTable {
    /// `--admin ADDR`.
    pub admin: Option<std::net::SocketAddr>,
    /// `--hub redis://HOST:PORT[/DB]`.
    pub hub: Option<super::hub::HubUrl>,
    /// `--hub-prefix PREFIX`.
    pub hub_prefix: Option<String>,
    /// `--reuse-port`.
    pub reuse_port: Option<bool>,
    /// `--ipv6-only`.
    pub ipv6_only: Option<bool>,
}
