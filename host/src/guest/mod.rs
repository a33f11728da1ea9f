//! What a guest touches: the wasi streams backed by its connection, granted files it can
//! splice into them, the hub behind the
//! `hub` interface, its TLS session behind `tls`, its stdout/stderr turned into log lines, and the generated bindings.
//! Also the two things those share with the session: the connection's [`closer`] (a
//! host-side request to end it) and its [`traffic`] clock.

pub mod bindings;
pub mod closer;
pub(crate) mod files;
pub mod hub;
pub mod logpipe;
pub mod stream;
pub mod tls;
pub mod traffic;
