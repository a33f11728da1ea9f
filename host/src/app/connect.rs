//! `switchboard connect`: dial out and let a plugin talk (role `dialed`), with the current
//! directory granted read-write as `/` and the process's stdin/stdout as the plugin's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::config::{CacheDir, Limits};
use crate::guest::bindings::{Role, Transport};
use crate::guest::closer::Closer;
use crate::instance::LoadError;
use crate::instance::grants::{DirGrant, Grants, Stdio};
use crate::instance::plugin::{Plugin, PluginFile};
use crate::listener::conversation;
use crate::session::Outcome;
use crate::session::stream::{Measures, Pace, run_stream};

/// Why `connect` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The runtime could not be built.
    #[error("cannot start the WebAssembly runtime")]
    Runtime(#[source] anyhow::Error),
    /// The plugin did not load.
    #[error("{}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// The current directory is unknown.
    #[error("cannot find the current directory")]
    Cwd(#[source] std::io::Error),
    /// Dialing failed.
    #[error("cannot connect to {addr}")]
    Dial {
        /// HOST:PORT.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin ran and did not end well: it returned an error, trapped, or a limit or
    /// the host ended it.
    #[error("{}: {}", path.display(), describe(outcome))]
    Plugin {
        /// The file.
        path: PathBuf,
        /// How it ended.
        outcome: Outcome,
    },
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "ok".into(),
        Outcome::Err(msg) | Outcome::Trap(msg) | Outcome::Closed(msg) | Outcome::Failed(msg) => msg.clone(),
        Outcome::Limit(hit, msg) => format!("{}: {msg}", hit.name()),
    }
}

/// Dials `addr` and runs `plugin` on the connection until it returns.
pub async fn connect(addr: &str, plugin: &Path, env: Vec<(String, String)>, cache: &CacheDir) -> Result<(), ConnectError> {
    let rt = super::small_runtime(cache).map_err(ConnectError::Runtime)?;
    let cwd = std::env::current_dir().map_err(ConnectError::Cwd)?;
    let grants = Grants { env, dir: Some(DirGrant { host: cwd, writable: true }), stdio: Stdio::Inherit };
    let load_error = |source| ConnectError::Load { path: plugin.to_path_buf(), source };
    let file = PluginFile::read(plugin).await.map_err(load_error)?;
    // The user's own client: no idle timeout or CPU budget, just the memory limit.
    let limits = Limits { cpu_budget: None, idle_timeout: None, ..Limits::default() };
    let loaded = Arc::new(Plugin::load(&rt, file, grants, limits).await.map_err(load_error)?);
    let socket = TcpStream::connect(addr).await.map_err(|source| ConnectError::Dial { addr: addr.to_string(), source })?;
    let _ = socket.set_nodelay(true);
    let peer = socket.peer_addr().map(conversation::show).unwrap_or_else(|_| addr.to_string());
    let local = socket.local_addr().map(conversation::show).unwrap_or_default();
    let info = conversation::info(&rt, Transport::Tcp, Role::Dialed, peer, local);
    match run_stream(&rt, &loaded, info, socket.into_split(), Closer::new(), Pace::Client, Measures::none()).await {
        Outcome::Ok => Ok(()),
        outcome => Err(ConnectError::Plugin { path: plugin.to_path_buf(), outcome }),
    }
}
