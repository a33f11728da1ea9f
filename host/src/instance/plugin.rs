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
use wasmtime::component::{Component, InstancePre};

use super::cache::Origin;
use super::grants::Grants;
use super::info::{self, InfoError};
use super::runtime::Runtime;
use super::store::{State, StoreSpec, new_store};
use crate::config::units::Size;
use crate::config::{Limits, name_of};
use crate::guest::bindings::{PluginInfo, datagram_handler, handler, meta};
use crate::util::log_limit::LogLimiter;

/// Longest a `describe()` call may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which plugin world a component satisfies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum World {
    /// `meta` + `handler`: byte streams.
    Stream,
    /// `meta` + `datagram-handler`: datagrams.
    Datagram,
    /// All three.
    Full,
}

impl World {
    /// The WIT world name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            World::Stream => "stream-plugin",
            World::Datagram => "datagram-plugin",
            World::Full => "full-plugin",
        }
    }

    /// The interfaces it exports.
    pub(crate) fn exports(self) -> &'static str {
        match self {
            World::Stream => "meta, handler",
            World::Datagram => "meta, datagram-handler",
            World::Full => "meta, handler, datagram-handler",
        }
    }

    /// Whether it can serve byte streams.
    pub(crate) fn streams(self) -> bool {
        matches!(self, World::Stream | World::Full)
    }

    /// Whether it can answer datagrams.
    pub(crate) fn datagrams(self) -> bool {
        matches!(self, World::Datagram | World::Full)
    }
}

/// Why a file could not be loaded as a plugin. The message says what is wrong; the
/// cause, where there is one, is the error's source.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read it")]
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
    #[error("does not compile")]
    Compile(#[source] anyhow::Error),
    /// The host's compiler thread failed (the host's fault, not the plugin's).
    #[error("the host's compiler thread failed")]
    CompilerThread(#[source] tokio::task::JoinError),
    /// Its memory at start is more than the memory limit allows.
    #[error(
        "needs more memory at start than the memory limit of {limit} allows: raise --memory-limit (or the plugin's limits.memory-limit)"
    )]
    MemoryLimit {
        /// The limit in force.
        limit: Size,
    },
    /// It imports something the host does not provide.
    #[error("imports something the host does not provide")]
    Link(#[source] anyhow::Error),
    /// It exports none of the plugin worlds.
    #[error(
        "does not satisfy a plugin world: it lacks the export{} {}; a plugin exports \
         switchboard:plugin/meta@0.1.2 and handler and/or datagram-handler (see wit/switchboard.wit)",
        if .0.len() == 1 { "" } else { "s" },
        .0.join(", ")
    )]
    NoWorld(Vec<&'static str>),
    /// An export has the wrong shape.
    #[error("has an export of the wrong type")]
    BadExport(#[source] anyhow::Error),
    /// The host could not make an instance to call `describe()` in (the host's fault).
    #[error("cannot make an instance for describe()")]
    Store(#[source] std::io::Error),
    /// `describe()` failed.
    #[error("describe() failed")]
    Describe(#[source] anyhow::Error),
    /// `describe()` did not answer in time.
    #[error("describe() did not answer within {0:?}")]
    DescribeTimeout(Duration),
    /// `describe()` answered outside the bounds the host keeps.
    #[error("describe() returned more than the host keeps")]
    Info(#[source] InfoError),
}

/// A plugin file read from disk and recognised as a component, not compiled yet.
pub(crate) struct PluginFile {
    /// Where it was read from.
    pub(crate) path: PathBuf,
    /// SHA-256 of the file, hex.
    pub(crate) sha256: String,
    bytes: Vec<u8>,
}

impl PluginFile {
    /// Reads `path` and checks that it holds a component; hashes it (so an unchanged file
    /// can be told apart before anything is compiled).
    pub(crate) async fn read(path: &Path) -> Result<PluginFile, LoadError> {
        let bytes = tokio::fs::read(path).await.map_err(LoadError::Read)?;
        classify(&bytes)?;
        let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
        Ok(PluginFile { path: path.to_path_buf(), sha256, bytes })
    }
}

/// A plugin ready to serve.
pub(crate) struct Plugin {
    /// Name used on the command line and in logs: the file stem.
    pub(crate) name: Arc<str>,
    /// Where it was loaded from.
    pub(crate) path: PathBuf,
    /// What it said about itself.
    pub(crate) info: PluginInfo,
    /// The world it satisfies.
    pub(crate) world: World,
    /// The host interfaces of `switchboard:plugin` it imports (`hub`, `tls`), in WIT order.
    pub(crate) imports: Vec<&'static str>,
    /// SHA-256 of the file, hex.
    pub(crate) sha256: String,
    /// Size of the file in bytes.
    pub(crate) size: usize,
    /// How long compilation (or loading from the cache) took.
    pub(crate) compile_time: Duration,
    /// Whether the compiled code came from the cache.
    pub(crate) origin: Origin,
    /// What every instance is given.
    pub(crate) grants: Grants,
    /// Limits on every connection.
    pub(crate) limits: Limits,
    /// The allowance of log lines for its instances' stdout/stderr, shared by all of them.
    pub(crate) output: Arc<LogLimiter>,
    pre: InstancePre<State>,
    stream: Option<handler::GuestIndices>,
    datagram: Option<datagram_handler::GuestIndices>,
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

/// The world the exports found make up, or which exports are missing.
fn world_of(meta: bool, stream: bool, datagram: bool) -> Result<World, LoadError> {
    match (meta, stream, datagram) {
        (true, true, true) => Ok(World::Full),
        (true, true, false) => Ok(World::Stream),
        (true, false, true) => Ok(World::Datagram),
        _ => {
            let mut missing = Vec::new();
            if !meta {
                missing.push("switchboard:plugin/meta@0.1.2");
            }
            if !stream && !datagram {
                missing.push("switchboard:plugin/handler@0.1.2 (or datagram-handler)");
            }
            Err(LoadError::NoWorld(missing))
        }
    }
}

impl Plugin {
    /// Compiles (off the async threads, or from the cache), links and describes `file`.
    pub(crate) async fn load(rt: &Arc<Runtime>, file: PluginFile, grants: Grants, limits: Limits) -> Result<Plugin, LoadError> {
        let PluginFile { path, sha256, bytes } = file;
        let size = bytes.len();
        let (engine, cache, key) = (rt.engine().clone(), rt.cache().clone(), sha256.clone());
        let started = Instant::now();
        let (component, origin) = tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &bytes, &key))
            .await
            .map_err(LoadError::CompilerThread)?
            .map_err(|e| compile_error(anyhow::Error::from(e), rt.memory_limit()))?;
        let compile_time = started.elapsed();

        let pre = rt.linker().instantiate_pre(&component).map_err(|e| LoadError::Link(e.into()))?;
        let meta = meta::GuestIndices::new(&pre).ok();
        let stream = handler::GuestIndices::new(&pre).ok();
        let datagram = datagram_handler::GuestIndices::new(&pre).ok();
        let world = world_of(meta.is_some(), stream.is_some(), datagram.is_some())?;
        let imports = host_imports(&component, rt.engine());
        let name: Arc<str> = name_of(&path).into();
        let output = Arc::new(LogLimiter::new(LogLimiter::OUTPUT_PER_SECOND));
        let exports = Exports { meta: meta.as_ref().expect("world_of checked it"), stream: stream.as_ref(), datagram: datagram.as_ref() };
        let info = describe(rt, &name, &pre, exports, &grants, &limits, &output).await?;
        info::check(&info).map_err(LoadError::Info)?;
        Ok(Plugin { name, path, info, world, imports, sha256, size, compile_time, origin, grants, limits, output, pre, stream, datagram })
    }

    /// Whether it imports `switchboard:plugin/tls` (so can ask for its TLS session).
    pub(crate) fn imports_tls(&self) -> bool {
        self.imports.contains(&"tls")
    }

    /// The pre-linked component, for instantiation.
    pub(crate) fn instance_pre(&self) -> &InstancePre<State> {
        &self.pre
    }

    /// The stream handler's export indices, if it has one.
    pub(crate) fn stream_exports(&self) -> Option<&handler::GuestIndices> {
        self.stream.as_ref()
    }

    /// The datagram handler's export indices, if it has one.
    pub(crate) fn datagram_exports(&self) -> Option<&datagram_handler::GuestIndices> {
        self.datagram.as_ref()
    }
}

/// Which of the host's own interfaces (`hub`, `tls`) `component` imports, whatever
/// version of `switchboard:plugin` it was built against.
fn host_imports(component: &Component, engine: &wasmtime::Engine) -> Vec<&'static str> {
    let names: Vec<String> = component.component_type().imports(engine).map(|(name, _)| name.to_string()).collect();
    ["hub", "tls"]
        .into_iter()
        .filter(|interface| {
            let prefix = format!("switchboard:plugin/{interface}@");
            names.iter().any(|n| n.starts_with(&prefix))
        })
        .collect()
}

/// A compile error; the pool's "does not fit" means the memory limit is too small for the
/// plugin, which is the operator's setting to change, not the plugin's fault.
fn compile_error(e: anyhow::Error, pool_memory: usize) -> LoadError {
    if format!("{e:#}").contains("does not fit in pooling allocator") {
        return LoadError::MemoryLimit { limit: Size(pool_memory) };
    }
    LoadError::Compile(e)
}

/// The exports `describe` checks.
struct Exports<'a> {
    meta: &'a meta::GuestIndices,
    stream: Option<&'a handler::GuestIndices>,
    datagram: Option<&'a datagram_handler::GuestIndices>,
}

/// Instantiates once, checks the exports' types and calls `describe()`. The instance gets
/// the plugin's settings only (no files, no hub), and an instance slot like any other.
async fn describe(
    rt: &Arc<Runtime>,
    name: &Arc<str>,
    pre: &InstancePre<State>,
    exports: Exports<'_>,
    grants: &Grants,
    limits: &Limits,
    output: &Arc<LogLimiter>,
) -> Result<PluginInfo, LoadError> {
    let _slot = rt.instance_slot().await;
    let span = tracing::info_span!("describe", plugin = %name);
    let describe_grants = Grants { env: grants.env.clone(), ..Grants::default() };
    let spec = StoreSpec {
        grants: &describe_grants,
        limits,
        pool_memory: rt.memory_limit(),
        output,
        span: &span,
        hub: None,
        activity: None,
        tls: None,
    };
    let mut store = new_store(rt.engine(), spec).map_err(LoadError::Store)?;
    let call = async {
        let instance = pre.instantiate_async(&mut store).await.map_err(|e| LoadError::Describe(e.into()))?;
        if let Some(stream) = exports.stream {
            stream.load(&mut store, &instance).map_err(|e| LoadError::BadExport(e.into()))?;
        }
        if let Some(datagram) = exports.datagram {
            datagram.load(&mut store, &instance).map_err(|e| LoadError::BadExport(e.into()))?;
        }
        let meta = exports.meta.load(&mut store, &instance).map_err(|e| LoadError::BadExport(e.into()))?;
        meta.call_describe(&mut store).await.map_err(|e| LoadError::Describe(e.into()))
    };
    let result = tokio::time::timeout(DESCRIBE_TIMEOUT, call).instrument(span.clone()).await;
    let memory_refused = store.data().memory.hit;
    match result {
        Err(_) => Err(LoadError::DescribeTimeout(DESCRIBE_TIMEOUT)),
        // A refused growth while instantiating: the plugin's own memory limit is too small.
        Ok(Err(LoadError::Describe(_))) if memory_refused => Err(LoadError::MemoryLimit { limit: Size(limits.memory) }),
        Ok(other) => other,
    }
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
