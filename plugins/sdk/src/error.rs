//! The error a handler returns: anything printable, so `?` works on I/O errors.

use std::fmt;

/// An error ending a connection; its text is what the host logs.
///
/// Any `std::error::Error` converts into it, so `?` works inside handlers; use
/// [`Error::msg`] for a plain message.
pub struct Error(String);

impl Error {
    /// An error with the given message.
    pub fn msg(msg: impl fmt::Display) -> Self {
        Error(msg.to_string())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(err: E) -> Self {
        Error(err.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What handlers return.
pub type Result<T = (), E = Error> = std::result::Result<T, E>;
