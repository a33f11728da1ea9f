//! [`Sources`]: where plugins come from — `--plugin` files, the `--plugins` folder, and
//! the `--config` file's tables.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{PluginConfig, name_of};

/// Where plugins come from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// `--plugin PATH` files with their names, in command-line order.
    pub(crate) files: Vec<(String, PathBuf)>,
    /// `--plugins DIR`: every `*.wasm` in it.
    pub(crate) dir: Option<PathBuf>,
    /// `--config FILE`.
    pub(crate) config_file: Option<PathBuf>,
}

impl Sources {
    /// The component file for `name`, if any source names one (command line first, then
    /// the config file, then the plugins folder).
    pub(crate) fn locate(&self, name: &str, config: &BTreeMap<String, PluginConfig>) -> Option<PathBuf> {
        if let Some((_, path)) = self.files.iter().find(|(n, _)| n == name) {
            return Some(path.clone());
        }
        if let Some(path) = config.get(name).and_then(|c| c.path.clone()) {
            return Some(path);
        }
        let path = self.dir.as_ref()?.join(format!("{name}.wasm"));
        path.is_file().then_some(path)
    }

    /// Whether `name` was given with `--plugin` (such a plugin must start, or `serve`
    /// fails; others are rejected with a log line and the server goes on).
    pub(crate) fn named_on_command_line(&self, name: &str) -> bool {
        self.files.iter().any(|(n, _)| n == name)
    }

    /// Every plugin name the sources mention now: `--plugin` files in command-line order,
    /// then the config file's and the folder's, sorted.
    pub(crate) fn names(&self, config: &BTreeMap<String, PluginConfig>) -> Vec<String> {
        let mut others: Vec<String> = config.keys().cloned().collect();
        if let Some(dir) = &self.dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
                    others.push(name_of(&path));
                }
            }
        }
        others.sort();
        let mut names: Vec<String> = self.files.iter().map(|(n, _)| n.clone()).collect();
        for name in others {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}
