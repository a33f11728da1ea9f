//! Printing an error with its causes, each once: `message: cause: cause's cause`.
//!
//! The convention of this crate (ripgrep's): an error's own message never repeats its
//! source; the source is reachable through [`std::error::Error::source`], and whoever
//! prints the error (the binary, a log line) prints the chain once with [`Chain`].

use std::error::Error;
use std::fmt;

/// Displays an error followed by every cause in its chain, separated by `: `. Some
/// crates' errors end their own message with their source's (tracing-subscriber's
/// filter `ParseError` does); a cause already printed that way is not printed again.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let message = e.to_string();
            if !last.ends_with(&message) {
                write!(f, ": {message}")?;
            }
            last = message;
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

    #[derive(Debug, thiserror::Error)]
    #[error("bad filter: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_cause_the_message_already_ends_with_is_not_repeated() {
        let e = Outer(std::io::Error::other(Repeats(std::io::Error::other("expected a level"))));
        assert_eq!(Chain(&e).to_string(), "outer: bad filter: expected a level");
    }
}
