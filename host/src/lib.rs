//! switchboard: a native host that owns every socket and hands each connection's byte
//! stream to its own sandboxed WebAssembly component.
//!
//! # Layout: the path of one connection
//!
//! ```text
//! cli        command line → ServeConfig
//! serve      load plugins, bind listeners (prints `listening NAME tcp://ADDR`), drain on
//!            shutdown
//!   listen     listener address syntax (PORT | HOST:PORT | tcp:… | udp:… | serial:…)
//!   service    a served plugin: its current version (swapped atomically), its stop token
//!   tcp        TCP listeners: accept, one task and one fresh instance per connection
//!   plugin     file → validated component: compile off the async threads, link, match a
//!              world, call describe()
//!   runtime    engine (pooling allocator, epoch ticker), linker, instance semaphore
//!   session    one connection: Store + instance, streams handed over, outcome logged,
//!              last bytes delivered, Store dropped
//!     stream     wasi input/output streams backed by the connection halves
//!     hub        rooms for cross-connection messages (the `hub` interface)
//!     logpipe    plugin stdout/stderr → host log
//!     closer     host-initiated graceful close of one connection
//!     grants     what a plugin may touch: settings, a directory, stdio
//!     state      what a Store holds
//!   cache      compiled components on disk, keyed by content and engine
//! check      `switchboard check`
//! connect    `switchboard connect`: dial out, run a plugin with role `dialed`
//! bindings   wasmtime bindgen of wit/switchboard.wit
//! ```

#![deny(missing_docs)]

pub mod bindings;
pub mod cache;
pub mod check;
pub mod cli;
pub mod closer;
pub mod connect;
pub mod grants;
pub mod hub;
pub mod listen;
pub mod logpipe;
pub mod plugin;
pub mod runtime;
pub mod serve;
pub mod service;
pub mod session;
pub mod state;
pub mod stream;
pub mod tcp;
