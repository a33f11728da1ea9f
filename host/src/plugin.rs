//! [`Plugin`]: a loaded, validated, ready-to-instantiate component.
//!
//! Loading reads the file, tells a component from anything else, compiles it on a
//! blocking thread (never on the async runtime), links it against WASI and the hub,
//! works out which plugin world it satisfies, and calls its `describe()` once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::Instrument;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::bindings::{PluginInfo, datagram_handler, handler, meta};
use crate::cache::Origin;
use crate::closer::Closer;
use crate::grants::Grants;
use crate::limits::Limits;
use crate::metrics::LogLimiter;
use crate::runtime::Runtime;
use crate::state::State;

/// Longest a `describe()` call may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which plugin world a component satisfies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `meta` + `handler`: byte streams.
    Stream,
    /// `meta` + `datagram-handler`: datagrams.
    Datagram,
    /// All three.
    Full,
}

impl World {
    /// The WIT world name.
    pub fn name(self) -> &'static str {
        match self {
            World::Stream => "stream-plugin",
            World::Datagram => "datagram-plugin",
            World::Full => "full-plugin",
        }
    }

    /// The interfaces it exports.
    pub fn exports(self) -> &'static str {
        match self {
            World::Stream => "meta, handler",
            World::Datagram => "meta, datagram-handler",
            World::Full => "meta, handler, datagram-handler",
        }
    }

    /// Whether it can serve byte streams.
    pub fn streams(self) -> bool {
        matches!(self, World::Stream | World::Full)
    }

    /// Whether it can answer datagrams.
    pub fn datagrams(self) -> bool {
        matches!(self, World::Datagram | World::Full)
    }
}

/// Why a file could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    /// Not WebAssembly at all.
    #[error("not a WebAssembly file ({0})")]
    NotWasm(String),
    /// A core module rather than a component.
    #[error(
        "a core WebAssembly module, not a component: build it for the wasm32-wasip2 target \
         (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// A wasm binary of an encoding this host does not know.
    #[error("unsupported WebAssembly encoding (version/layer bytes {0:02x?})")]
    Encoding([u8; 4]),
    /// wasmtime rejected the component.
    #[error("does not compile: {0}")]
    Compile(String),
    /// It imports something the host does not provide.
    #[error("imports something the host does not provide: {0}")]
    Link(String),
    /// It exports none of the plugin worlds.
    #[error(
        "does not satisfy a plugin world: it lacks the export{} {}; a plugin exports \
         switchboard:plugin/meta@0.1.0 and handler and/or datagram-handler (see wit/switchboard.wit)",
        if .0.len() == 1 { "" } else { "s" },
        .0.join(", ")
    )]
    NoWorld(Vec<&'static str>),
    /// An export has the wrong shape.
    #[error("has an export of the wrong type: {0}")]
    BadExport(String),
    /// `describe()` failed.
    #[error("describe() failed: {0}")]
    Describe(String),
}

/// A plugin ready to serve.
pub struct Plugin {
    /// Name used on the command line and in logs: the file stem.
    pub name: Arc<str>,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// What it said about itself.
    pub info: PluginInfo,
    /// The world it satisfies.
    pub world: World,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size: usize,
    /// How long compilation (or loading from the cache) took.
    pub compile_time: Duration,
    /// Whether the compiled code came from the cache.
    pub origin: Origin,
    /// What every instance is given.
    pub grants: Grants,
    /// Limits on every connection.
    pub limits: Limits,
    /// The allowance of log lines for its instances' stdout/stderr, shared by all of them.
    pub output: Arc<LogLimiter>,
    pre: InstancePre<State>,
    stream: Option<handler::GuestIndices>,
    datagram: Option<datagram_handler::GuestIndices>,
}

/// The plugin name for a path: its file stem.
pub fn name_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Tells a component from a core module or a file that is not wasm at all.
fn classify(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(8)]).escape_debug().to_string();
        return Err(LoadError::NotWasm(format!("it starts with \"{shown}\", not \"\\0asm\"")));
    }
    let version = [bytes[4], bytes[5], bytes[6], bytes[7]];
    match version {
        [1, 0, 0, 0] => Err(LoadError::CoreModule),
        [_, _, 1, 0] => Ok(()),
        other => Err(LoadError::Encoding(other)),
    }
}

impl Plugin {
    /// Loads, validates and describes the plugin at `path`.
    pub async fn load(rt: &Arc<Runtime>, path: &Path, grants: Grants, limits: Limits) -> Result<Plugin, LoadError> {
        let bytes = tokio::fs::read(path).await.map_err(LoadError::Read)?;
        classify(&bytes)?;
        let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
        let size = bytes.len();

        let (engine, cache, key) = (rt.engine().clone(), rt.cache().clone(), sha256.clone());
        let started = Instant::now();
        let (component, origin) = tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &bytes, &key))
            .await
            .map_err(|e| LoadError::Compile(format!("the compiler thread failed: {e}")))?
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let compile_time = started.elapsed();

        let pre = rt.linker().instantiate_pre(&component).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let meta = meta::GuestIndices::new(&pre).ok();
        let stream = handler::GuestIndices::new(&pre).ok();
        let datagram = datagram_handler::GuestIndices::new(&pre).ok();
        let world = match (&meta, &stream, &datagram) {
            (Some(_), Some(_), Some(_)) => World::Full,
            (Some(_), Some(_), None) => World::Stream,
            (Some(_), None, Some(_)) => World::Datagram,
            _ => {
                let mut missing = Vec::new();
                if meta.is_none() {
                    missing.push("switchboard:plugin/meta@0.1.0");
                }
                if stream.is_none() && datagram.is_none() {
                    missing.push("switchboard:plugin/handler@0.1.0 (or datagram-handler)");
                }
                return Err(LoadError::NoWorld(missing));
            }
        };
        let name: Arc<str> = name_of(path).into();
        let meta = meta.expect("checked above");
        let output = Arc::new(LogLimiter::new(LogLimiter::OUTPUT_PER_SECOND));
        let slot = rt.instance_slot().await;
        // describe() needs no files; it gets the settings only.
        let describe_grants = Grants { env: grants.env.clone(), ..Grants::default() };
        let store = rt
            .new_store(&describe_grants, &limits, &output, &tracing::info_span!("describe", plugin = %name), String::new(), Closer::new())
            .map_err(|e| LoadError::Describe(e.to_string()))?;
        let info = describe(store, &name, &pre, &meta, stream.as_ref(), datagram.as_ref()).await?;
        drop(slot);
        Ok(Plugin {
            name,
            path: path.to_path_buf(),
            info,
            world,
            sha256,
            size,
            compile_time,
            origin,
            grants,
            limits,
            output,
            pre,
            stream,
            datagram,
        })
    }

    /// The pre-linked component, for instantiation.
    pub fn instance_pre(&self) -> &InstancePre<State> {
        &self.pre
    }

    /// The stream handler's export indices, if it has one.
    pub fn stream_exports(&self) -> Option<&handler::GuestIndices> {
        self.stream.as_ref()
    }

    /// The datagram handler's export indices, if it has one.
    pub fn datagram_exports(&self) -> Option<&datagram_handler::GuestIndices> {
        self.datagram.as_ref()
    }
}

/// Instantiates once in `store`, checks the exports' types and calls `describe()`.
async fn describe(
    mut store: Store<State>,
    name: &Arc<str>,
    pre: &InstancePre<State>,
    meta: &meta::GuestIndices,
    stream: Option<&handler::GuestIndices>,
    datagram: Option<&datagram_handler::GuestIndices>,
) -> Result<PluginInfo, LoadError> {
    let call = async {
        let instance = pre.instantiate_async(&mut store).await.map_err(|e| LoadError::Describe(format!("{e:?}")))?;
        if let Some(stream) = stream {
            stream.load(&mut store, &instance).map_err(|e| LoadError::BadExport(format!("{e:#}")))?;
        }
        if let Some(datagram) = datagram {
            datagram.load(&mut store, &instance).map_err(|e| LoadError::BadExport(format!("{e:#}")))?;
        }
        let meta = meta.load(&mut store, &instance).map_err(|e| LoadError::BadExport(format!("{e:#}")))?;
        meta.call_describe(&mut store).await.map_err(|e| LoadError::Describe(format!("{e:?}")))
    };
    tokio::time::timeout(DESCRIBE_TIMEOUT, call)
        .instrument(tracing::info_span!("describe", plugin = %name))
        .await
        .map_err(|_| LoadError::Describe(format!("no answer within {DESCRIBE_TIMEOUT:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names_what_the_file_is() {
        assert!(matches!(classify(b"[workspace]\nmembers"), Err(LoadError::NotWasm(_))));
        assert!(matches!(classify(b"\0asm"), Err(LoadError::NotWasm(_))));
        assert!(matches!(classify(b"\0asm\x01\0\0\0"), Err(LoadError::CoreModule)));
        assert!(matches!(classify(b"\0asm\x0d\0\x01\0"), Ok(())));
        assert!(matches!(classify(b"\0asm\x0d\0\x02\0"), Err(LoadError::Encoding(_))));
        let msg = classify(b"[workspace]").unwrap_err().to_string();
        assert!(msg.contains("not a WebAssembly file") && msg.contains("[workspa"), "{msg}");
    }
}
