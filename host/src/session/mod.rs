//! Sessions: one conversation on a fresh instance, from start to reported end —
//! a byte stream ([`stream`]) or a datagram ([`datagram`]), watched by the [`watchdog`],
//! named by one classifier ([`outcome`]); recorded as a [`transcript`] when asked ([`record`]).

pub(crate) mod datagram;
pub(crate) mod outcome;
pub(crate) mod record;
pub(crate) mod stream;
pub(crate) mod transcript;
pub(crate) mod watchdog;

pub use outcome::Outcome;
