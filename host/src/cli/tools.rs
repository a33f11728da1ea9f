//! The flags of the subcommands that are not `serve`: `test`, `new`, `status`,
//! `connect` and `check`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use switchboard::config::units::OptionalDuration;
use switchboard::config::{Duplicate, collect_env};

use super::CacheArgs;

/// `switchboard test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The plugin to test.
    #[arg(value_name = "PLUGIN.wasm")]
    pub plugin: PathBuf,

    /// Transcript files (see README: `> sent`, `< expected`, `closes`, `eof`).
    #[arg(required = true, value_name = "TRANSCRIPT")]
    pub transcripts: Vec<PathBuf>,

    /// KEY=VALUE: an environment variable of the plugin; repeatable, each KEY once.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub settings: Vec<(String, String)>,

    /// A host directory the plugin sees, read-only, as `/`.
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,

    /// How long each step waits for the plugin's bytes (`off`: no limit).
    #[arg(long, value_name = "DUR", default_value_t = OptionalDuration(Some(switchboard::app::test::DEFAULT_TIMEOUT)))]
    pub timeout: OptionalDuration,

    /// Compiled-artifact cache location.
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl TestArgs {
    /// The library's options for this run.
    pub fn options(&self) -> Result<switchboard::app::test::TestOptions, Duplicate> {
        Ok(switchboard::app::test::TestOptions { env: collect_env(self.settings.clone())?, dir: self.dir.clone(), timeout: self.timeout.0 })
    }
}

/// `switchboard new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: the directory, the package and NAME.wasm (letters, digits, '-', '_').
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The language of the project.
    #[arg(long, value_enum)]
    pub lang: NewLang,

    /// The world the plugin exports.
    #[arg(long, value_enum, default_value = "full")]
    pub world: NewWorld,
}

/// `switchboard new --lang`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NewLang {
    /// A Cargo project for wasm32-wasip2.
    Rust,
    /// An app.py built by componentize-py (pinned, installed into ./NAME/.venv).
    Python,
    /// An app.js built by componentize-js (pinned, installed by npm).
    Js,
}

/// `switchboard new --world`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NewWorld {
    /// One connection per instance (TCP, serial).
    Stream,
    /// One UDP datagram in, replies out.
    Datagram,
    /// Both handlers and the hub.
    Full,
}

impl NewArgs {
    /// The library's view of --lang and --world.
    pub fn kind(&self) -> (switchboard::app::new::Lang, switchboard::app::new::World) {
        use switchboard::app::new::{Lang, World};
        let lang = match self.lang {
            NewLang::Rust => Lang::Rust,
            NewLang::Python => Lang::Python,
            NewLang::Js => Lang::Js,
        };
        let world = match self.world {
            NewWorld::Stream => World::Stream,
            NewWorld::Datagram => World::Datagram,
            NewWorld::Full => World::Full,
        };
        (lang, world)
    }
}

/// `switchboard status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The admin endpoint of the server (its `listening admin http://ADDR`).
    #[arg(long, value_name = "HOST:PORT", default_value = switchboard::app::status::DEFAULT_ADMIN)]
    pub admin: String,

    /// The file holding the server's admin token (sent as `Authorization: Bearer`).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// What to do; default: `ps` then `w`.
    #[command(subcommand)]
    pub action: Option<StatusAction>,
}

/// `switchboard status` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum StatusAction {
    /// The served plugins: version, hash, listeners, counters.
    Ps,
    /// The open connections: id, plugin, peer, age, bytes, CPU.
    W,
    /// Close connection ID gracefully (as a limit would).
    Close {
        /// The connection id (from `w`).
        id: u64,
    },
    /// Re-read plugin NAME's files and apply them.
    Reload {
        /// Plugin name.
        name: String,
    },
    /// Put plugin NAME's previous version back.
    Rollback {
        /// Plugin name.
        name: String,
    },
    /// Stop accepting on plugin NAME's listeners (or the listener NAME, e.g. tcp://127.0.0.1:50007); open connections go on.
    Pause {
        /// Plugin name or listener URL.
        name: String,
    },
    /// Accept again on what `pause` stopped.
    Resume {
        /// Plugin name or listener URL.
        name: String,
    },
    /// Stop accepting everywhere, let open connections finish (up to the drain timeout), then exit.
    Drain,
}

impl StatusAction {
    /// The library's form of this action.
    pub fn request(&self) -> switchboard::app::status::Action {
        use switchboard::app::status::Action;
        match self.clone() {
            StatusAction::Ps => Action::Ps,
            StatusAction::W => Action::W,
            StatusAction::Close { id } => Action::Close(id),
            StatusAction::Reload { name } => Action::Reload(name),
            StatusAction::Rollback { name } => Action::Rollback(name),
            StatusAction::Pause { name } => Action::Pause(name),
            StatusAction::Resume { name } => Action::Resume(name),
            StatusAction::Drain => Action::Drain,
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

    /// KEY=VALUE: an environment variable of the plugin; repeatable, each KEY once.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub settings: Vec<(String, String)>,

    /// Compiled-artifact cache location.
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl ConnectArgs {
    /// The plugin's settings, each key once.
    pub fn env(&self) -> Result<Vec<(String, String)>, Duplicate> {
        collect_env(self.settings.clone())
    }
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

/// Parses `KEY=VALUE` (VALUE may be empty).
fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}
