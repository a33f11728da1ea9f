//! `switchboard check`: load each file as the server would and report on it.

use std::path::PathBuf;

use crate::config::{CacheDir, Limits};
use crate::instance::cache::Origin;
use crate::instance::grants::Grants;
use crate::instance::plugin::{Plugin, PluginFile};
use crate::util::error::Chain;

/// Checks every path; prints a report per plugin to stdout and a reason per failure to
/// stderr. Returns whether all of them are valid plugins (an `Err` only when the host
/// itself cannot run).
pub async fn check(paths: &[PathBuf], cache: &CacheDir) -> anyhow::Result<bool> {
    let rt = super::small_runtime(cache)?;
    let mut all_ok = true;
    for path in paths {
        let loaded = match PluginFile::read(path).await {
            Ok(file) => Plugin::load(&rt, file, Grants::default(), Limits::default()).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(plugin) => println!("{}", report(&plugin)),
            Err(e) => {
                all_ok = false;
                eprintln!("{}: error: {}", path.display(), Chain(&e));
            }
        }
    }
    Ok(all_ok)
}

/// The human-readable report for one plugin.
fn report(p: &Plugin) -> String {
    format!(
        "{path}: ok\n  world    {world} (exports {exports})\n  imports  {imports}\n  name     {name}\n  version  {version}\n  summary  {summary}\n  listen   {listen}\n  size     {size} bytes\n  sha256   {sha}\n  compile  {ms} ms{cached}",
        path = p.path.display(),
        world = p.world.name(),
        exports = p.world.exports(),
        imports = if p.imports.is_empty() { "(no host interfaces)".to_string() } else { p.imports.join(", ") },
        name = p.info.name,
        version = p.info.version,
        summary = p.info.summary,
        listen = if p.info.listen.is_empty() { "(none)".to_string() } else { p.info.listen.join(", ") },
        size = p.size,
        sha = p.sha256,
        ms = p.compile_time.as_millis(),
        cached = if p.origin == Origin::Cached { " (from the cache)" } else { "" },
    )
}
