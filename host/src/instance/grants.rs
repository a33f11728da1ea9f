//! [`Grants`]: everything a plugin's instances may touch besides their connection.
//! Nothing is granted by default: no files, no sockets, no environment variables.

use std::path::PathBuf;

/// A host directory a plugin sees as `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirGrant {
    /// The host directory.
    pub(crate) host: PathBuf,
    /// Whether the plugin may create and write files (only `switchboard connect` grants
    /// this, for the current directory).
    pub(crate) writable: bool,
}

/// Where a plugin's stdin/stdout/stderr go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Stdio {
    /// No stdin; stdout and stderr become host log lines (`serve`).
    #[default]
    Log,
    /// The host process's own stdin, stdout and stderr (`connect`).
    Inherit,
}

/// What every instance of one plugin is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Grants {
    /// Environment variables: the plugin's settings.
    pub(crate) env: Vec<(String, String)>,
    /// A directory preopened as `/`, if any.
    pub(crate) dir: Option<DirGrant>,
    /// Where stdio goes.
    pub(crate) stdio: Stdio,
}
