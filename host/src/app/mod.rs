//! The subcommands: [`serve`](serve::serve) (with its [`admin`] endpoint),
//! [`connect`](connect::connect), [`new`](new::new_project), [`check`](check::check), [`status`](status::status)
//! and [`test`](test::test). The binary's `cli` turns the command line into their
//! arguments; nothing here knows about clap.

pub mod admin;
pub mod check;
pub mod connect;
pub mod new;
pub mod privileges;
pub mod serve;
pub mod status;
mod systemd;
pub mod test;

use std::sync::Arc;

use crate::config::CacheDir;
use crate::instance::cache::ArtifactCache;
use crate::instance::runtime::{Runtime, RuntimeOptions};

/// The runtime of `connect`, `check` and `test`: a few instances, no heavy lane.
fn small_runtime(cache: &CacheDir) -> anyhow::Result<Arc<Runtime>> {
    let options =
        RuntimeOptions { max_instances: 16, cache: ArtifactCache::from_config(cache), heavy_lane_threads: 0, ..Default::default() };
    Runtime::new(options).map_err(anyhow::Error::from)
}
