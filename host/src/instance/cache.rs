//! The compiled-artifact cache: a component compiled once is stored on disk, keyed by the
//! SHA-256 of its wasm and the engine's compatibility hash, so a restart or a swap back
//! to a known version loads in milliseconds instead of recompiling (a componentize-py
//! plugin takes ~12 s to compile).
//!
//! Entries are never trusted blindly: each file carries the SHA-256 of its body and is
//! checked before wasmtime sees it; a corrupt, truncated or foreign entry is logged,
//! ignored and rebuilt. Writes go to a temporary file renamed into place.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::config::CacheDir;

/// Identifies the file format of an entry.
const MAGIC: &[u8; 8] = b"SWBCWASM";

/// Where compiled components are kept (or nowhere, with `--no-cache`).
#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: Option<PathBuf>,
}

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Loaded from a cache entry.
    Cached,
    /// Compiled from the wasm.
    Compiled,
}

impl ArtifactCache {
    /// A cache in `dir`.
    pub(crate) fn at(dir: impl Into<PathBuf>) -> Self {
        ArtifactCache { dir: Some(dir.into()) }
    }

    /// No cache: always compile.
    pub(crate) fn disabled() -> Self {
        ArtifactCache { dir: None }
    }

    /// The cache `dir` selects.
    pub(crate) fn from_config(dir: &CacheDir) -> Self {
        match dir {
            CacheDir::Off => ArtifactCache::disabled(),
            CacheDir::At(dir) => ArtifactCache::at(dir),
            CacheDir::Default => ArtifactCache::default_dir().map_or_else(ArtifactCache::disabled, ArtifactCache::at),
        }
    }

    /// The user's cache directory: `$XDG_CACHE_HOME/switchboard`, else `~/.cache/switchboard`.
    pub(crate) fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("switchboard"))
    }

    fn entry(&self, engine: &Engine, wasm_sha256: &str) -> Option<PathBuf> {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        Some(self.dir.as_ref()?.join(engine_key).join(format!("{wasm_sha256}.cwasm")))
    }

    /// The component for `wasm` (whose SHA-256 is `sha256`): from the cache if a valid
    /// entry exists, else compiled and stored. Blocking: call it off the async threads.
    pub(crate) fn load_or_compile(&self, engine: &Engine, wasm: &[u8], sha256: &str) -> wasmtime::Result<(Component, Origin)> {
        let entry = self.entry(engine, sha256);
        if let Some(path) = &entry
            && let Some(component) = read_entry(engine, path)
        {
            return Ok((component, Origin::Cached));
        }
        let component = Component::new(engine, wasm)?;
        if let Some(path) = &entry
            && let Err(e) = write_entry(&component, path)
        {
            tracing::warn!(path = %path.display(), "cannot write the compiled-artifact cache: {e}");
        }
        Ok((component, Origin::Compiled))
    }
}

fn read_entry(engine: &Engine, path: &Path) -> Option<Component> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read cache entry, recompiling: {e}");
            return None;
        }
    };
    let header = MAGIC.len() + 32;
    let valid = bytes.len() > header
        && &bytes[..MAGIC.len()] == MAGIC
        && Sha256::digest(&bytes[header..]).as_slice() == &bytes[MAGIC.len()..header];
    if !valid {
        tracing::warn!(path = %path.display(), "ignoring a corrupt cache entry; recompiling");
        return None;
    }
    // SAFETY: the body is exactly what `Component::serialize` produced for this engine
    // configuration (checked by digest above; the engine key is in the path), and wasmtime
    // checks its own header and compatibility again.
    match unsafe { Component::deserialize(engine, &bytes[header..]) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring an unusable cache entry ({e}); recompiling");
            None
        }
    }
}

fn write_entry(component: &Component, path: &Path) -> anyhow::Result<()> {
    let body = component.serialize()?;
    let dir = path.parent().expect("entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().unwrap().to_string_lossy(), std::process::id()));
    let mut data = Vec::with_capacity(MAGIC.len() + 32 + body.len());
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&Sha256::digest(&body));
    data.extend_from_slice(&body);
    std::fs::write(&tmp, &data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
