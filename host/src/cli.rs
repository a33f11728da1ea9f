//! The command line (clap) → the library's configuration. Part of the binary only: the
//! value syntaxes and defaults are the library's (`config::units`, `config::defaults`),
//! so `--help` shows the same defaults the library uses. `serve`'s flags are in
//! [`serve`], the other subcommands' in [`tools`].

mod serve;
mod tools;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use switchboard::config::CacheDir;

pub use serve::ServeArgs;
pub use tools::{CheckArgs, ConnectArgs, NewArgs, StatusAction, StatusArgs, TestArgs};

/// switchboard: every connection's byte stream handed to its own sandboxed WebAssembly
/// component.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
pub struct Cli {
    /// How log records are written to stderr: `text` lines, or `json` (one object per
    /// line, with plugin, connection id and peer as fields).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    pub log_format: crate::logging::LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve plugins on their listeners until SIGINT/SIGTERM (SIGHUP re-reads every
    /// plugin and configuration file, SIGUSR1 logs the status).
    ///
    /// Prints one line per bound listener to stdout: `listening NAME tcp://ADDR` (or
    /// `tls://ADDR`, `udp://ADDR`, `serial://DEVICE`), and `watching PATH` for the folder
    /// it follows.
    /// Logs go to stderr (level from RUST_LOG, default info). Every limit takes `off`
    /// (or 0) for "no limit".
    Serve(Box<ServeArgs>),
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
    /// Show what a running `serve --admin` serves (plugins and open connections, read
    /// from its admin API), or act on it.
    ///
    /// Without an action prints the plugins (`ps`) and the open connections (`w`).
    /// Actions that change something send the token from --admin-token-file.
    Status(StatusArgs),
    /// Replay transcripts against a plugin in-process (no sockets), a fresh instance per
    /// client; compare what it sends with what each transcript expects.
    ///
    /// Prints `ok PATH` per transcript that passes, `FAIL PATH` and a diff (expected vs
    /// got, escaped) per one that does not, then `N passed, M failed`. Exits 0 only if all
    /// pass.
    Test(TestArgs),
    /// Write a new plugin project in ./NAME (echo-shaped handler, the contract WIT and the
    /// SDK vendored in), and print the command that builds NAME.wasm.
    ///
    /// Refuses a NAME directory that exists and is not empty.
    New(NewArgs),
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
    pub fn cache(&self) -> CacheDir {
        match (&self.cache_dir, self.no_cache) {
            (_, true) => CacheDir::Off,
            (Some(dir), false) => CacheDir::At(dir.clone()),
            (None, false) => CacheDir::Default,
        }
    }
}
