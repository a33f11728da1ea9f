//! Printing an error with its causes, each once: `message: cause: cause's cause`.
//!
//! The convention of this crate (ripgrep's): an error's own message never repeats its
//! source; the source is reachable through [`std::error::Error::source`], and whoever
//! prints the error (the binary, a log line) prints the chain once with [`Chain`].

use std::error::Error;
use std::fmt;

/// Displays an error followed by every cause in its chain, separated by `: `.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_printed_once() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(Chain(&e).to_string(), "outer: inner");
    }
}
