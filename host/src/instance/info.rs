//! The bounds on what a plugin's `describe()` may say about itself: the host keeps the
//! answer for as long as the plugin is loaded, prints it in `check` and binds the
//! listeners it names, so an answer outside these bounds refuses the file.

use crate::guest::bindings::PluginInfo;

/// Longest name, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest version, in bytes.
pub const MAX_VERSION: usize = 64;
/// Longest summary, in bytes.
pub const MAX_SUMMARY: usize = 1024;
/// Most default listeners.
pub const MAX_LISTEN: usize = 64;
/// Longest default listener, in bytes (`serial:/dev/…` paths included).
pub const MAX_LISTEN_ENTRY: usize = 256;

/// What is out of bounds in a `describe()` answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InfoError {
    /// A text field is too long.
    #[error("its {field} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Too many default listeners.
    #[error("it lists {0} default listeners; at most {MAX_LISTEN} are allowed")]
    TooManyListeners(usize),
}

/// Checks `info` against the bounds.
pub(crate) fn check(info: &PluginInfo) -> Result<(), InfoError> {
    let field = |field, len, max| if len > max { Err(InfoError::TooLong { field, len, max }) } else { Ok(()) };
    field("name", info.name.len(), MAX_NAME)?;
    field("version", info.version.len(), MAX_VERSION)?;
    field("summary", info.summary.len(), MAX_SUMMARY)?;
    if info.listen.len() > MAX_LISTEN {
        return Err(InfoError::TooManyListeners(info.listen.len()));
    }
    for listen in &info.listen {
        field("listener entry", listen.len(), MAX_LISTEN_ENTRY)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(summary: usize, listen: usize) -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            version: "1".into(),
            summary: "s".repeat(summary),
            listen: (0..listen).map(|i| format!("tcp:{}", 50000 + i)).collect(),
        }
    }

    #[test]
    fn answers_inside_the_bounds_pass_and_outside_are_named() {
        assert_eq!(check(&info(MAX_SUMMARY, MAX_LISTEN)), Ok(()));
        assert_eq!(check(&info(16 << 20, 1)), Err(InfoError::TooLong { field: "summary", len: 16 << 20, max: MAX_SUMMARY }));
        assert_eq!(check(&info(1, 100)), Err(InfoError::TooManyListeners(100)));
        let long_name = PluginInfo { name: "n".repeat(65), ..info(1, 1) };
        assert!(check(&long_name).unwrap_err().to_string().contains("name is 65 bytes long; at most 64"));
    }
}
