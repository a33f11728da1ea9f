//! switchboard: a native host that owns every socket and hands each connection's byte
//! stream to its own sandboxed WebAssembly component.
//!
//! # Layout: the path of one connection
//!
//! The folders are the layers a connection passes through, top to bottom; a module
//! imports only from layers below its own (`layering` checks it, in the tests):
//!
//! ```text
//! app/        serve (start, serve, drain), connect (dial out, role dialed), check,
//!             admin (metrics + process collectors, health, JSON API, status page,
//!             getfile form), status
//! control/    registry (what is served; load, bind, swap, remove; the operator's
//!             pause/resume/rollback), sources, watch
//! listener/   bind + `listening` line; tcp (+ tls: PEM setup, rotation slot,
//!             handshake), udp (+ udp_guard), serial accept loops; conversation: the
//!             one way every transport starts a conversation
//! service/    a served plugin: current version (swapped atomically), stop token,
//!             quarantine, connection table; accounting (per-listener counters,
//!             atomics only), endings (how conversations end or datagrams drop) and
//!             handshakes (TLS handshakes and client certificates, by reason)
//! admission   who may start a conversation, and how many at once (every transport)
//! session/    one conversation: stream or datagram, watchdog, outcome classifier
//! instance/   engine and pool (runtime), plugin load (+ cache), a Store with its
//!             grants, limits, CPU meter and epoch callback (store, live), lanes,
//!             meters (a conversation's bytes and CPU, for the connection table)
//! guest/      what the guest touches: wasi streams, the hub (+ its bindings impl on a
//!             view, its backplane seam and the Redis backplane), stdout/stderr to the
//!             log, the bindings, closer, traffic clock
//! config/     plain settings and value syntax (units, defaults, listen, files, tls)
//! util/       clocks, backoff, log-line allowance, error chains, lock-free histogram
//! ```
//!
//! Dependencies point one way: app → control → listener → service → admission →
//! session → instance → guest → config → util. The binary (`main.rs` + `cli.rs`, with
//! the subcommands' flags in `cli/`) turns the command line into [`config`] values and
//! calls [`app`]; nothing in the library knows about the command line.

#![deny(missing_docs)]

pub(crate) mod admission;
pub mod app;
pub mod config;
pub(crate) mod control;
pub(crate) mod guest;
pub(crate) mod instance;
pub(crate) mod listener;
pub(crate) mod service;
pub(crate) mod session;
pub mod util;

// The errors (and what they carry) that `app`'s functions return.
pub use control::ReloadError;
pub use guest::hub::BackplaneError;
pub use instance::{CapacityError, InfoError, LimitHit, LoadError};
pub use listener::{ListenerError, TlsError};
pub use session::Outcome;

#[cfg(test)]
mod layering;
