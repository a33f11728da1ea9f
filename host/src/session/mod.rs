//! Sessions: one conversation on a fresh instance, from start to reported end —
//! a byte stream ([`stream`]) or a datagram ([`datagram`]), watched by the [`watchdog`],
//! named by one classifier ([`outcome`]).

pub(crate) mod datagram;
pub(crate) mod outcome;
pub(crate) mod stream;
pub(crate) mod watchdog;

pub use outcome::Outcome;
