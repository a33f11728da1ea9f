//! `switchboard check`: load each file as the server would and report on it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::Origin;
use crate::grants::Grants;
use crate::limits::Limits;
use crate::plugin::Plugin;
use crate::runtime::Runtime;

/// Checks every path; prints a report per plugin to stdout and a reason per failure to
/// stderr. Returns whether all of them are valid plugins.
pub async fn check(rt: &Arc<Runtime>, paths: &[PathBuf]) -> bool {
    let mut all_ok = true;
    for path in paths {
        match Plugin::load(rt, path, Grants::default(), Limits::default()).await {
            Ok(plugin) => println!("{}", report(&plugin)),
            Err(e) => {
                all_ok = false;
                eprintln!("{}: error: {e}", path.display());
            }
        }
    }
    all_ok
}

/// The human-readable report for one plugin.
pub fn report(p: &Plugin) -> String {
    format!(
        "{path}: ok\n  world    {world} (exports {exports})\n  name     {name}\n  version  {version}\n  summary  {summary}\n  listen   {listen}\n  size     {size} bytes\n  sha256   {sha}\n  compile  {ms} ms{cached}",
        path = p.path.display(),
        world = p.world.name(),
        exports = p.world.exports(),
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
