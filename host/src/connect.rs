//! `switchboard connect`: dial out and let a plugin talk (role `dialed`), with the current
//! directory granted read-write as `/` and the process's stdin/stdout as the plugin's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::bindings::{ConnectionInfo, Role, Transport};
use crate::closer::Closer;
use crate::grants::{DirGrant, Grants, Stdio};
use crate::limits::Limits;
use crate::plugin::{LoadError, Plugin};
use crate::runtime::Runtime;
use crate::session::{self, Outcome};

/// Why `connect` could not run the plugin at all.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The plugin did not load.
    #[error("{path}: {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        source: LoadError,
    },
    /// The current directory is unknown.
    #[error("cannot find the current directory: {0}")]
    Cwd(std::io::Error),
    /// Dialing failed.
    #[error("cannot connect to {addr}: {source}")]
    Dial {
        /// HOST:PORT.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Dials `addr` and runs `plugin` on the connection until it returns.
pub async fn connect(rt: &Arc<Runtime>, addr: &str, plugin: &Path, env: Vec<(String, String)>) -> Result<Outcome, ConnectError> {
    let cwd = std::env::current_dir().map_err(ConnectError::Cwd)?;
    let grants = Grants { env, dir: Some(DirGrant { host: cwd, writable: true }), stdio: Stdio::Inherit };
    let plugin = Arc::new(
        // The user's own client: no idle timeout or CPU budget, just the memory limit.
        Plugin::load(rt, plugin, grants, Limits { cpu_budget: None, idle_timeout: None, ..Limits::default() })
            .await
            .map_err(|source| ConnectError::Load { path: plugin.to_path_buf(), source })?,
    );
    let socket = TcpStream::connect(addr).await.map_err(|source| ConnectError::Dial { addr: addr.to_string(), source })?;
    let _ = socket.set_nodelay(true);
    let info = ConnectionInfo {
        id: rt.next_conn_id(),
        transport: Transport::Tcp,
        role: Role::Dialed,
        peer: socket.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string()),
        local: socket.local_addr().map(|a| a.to_string()).unwrap_or_default(),
    };
    let (reader, writer) = socket.into_split();
    Ok(session::run_stream(rt, &plugin, info, reader, writer, Closer::new()).await)
}
