//! switchboard: a native host that owns every socket and hands each connection's byte
//! stream to its own sandboxed WebAssembly component.
//!
//! # Layout: the path of one connection
//!
//! ```text
//! cli        command line → ServeConfig
//! serve      start the registry and the watcher, serve until shutdown, then drain
//!   registry   served plugins by name, kept in step with their files: load, bind,
//!              swap atomically, re-listen, remove; rejects bad changes
//!   watch      notify events → debounced, stable-file reloads through the registry
//!   config     sidecar NAME.toml and --config FILE (listen, settings, dir, limits)
//!   listen     listener address syntax (PORT | HOST:PORT | tcp:… | udp:… | serial:…)
//!   service    a served plugin: its current version (swapped atomically), its stop token,
//!              its counters (metrics)
//!   admission  who may connect and how many at once (limits, rates, CIDR rules)
//!   backoff    doubling pauses after accept/receive errors and serial reopens
//!   tcp        TCP listeners: accept, one task and one fresh instance per connection
//!   udp        UDP listeners: one fresh instance per datagram, bounded in-flight
//!     udp_guard  reflection guards (ports, own address), per-peer reply allowance
//!     datagram   one datagram: fresh instance, handle-datagram, replies
//!   serial     serial lines: open raw + exclusive, one conversation at a time, reopen
//!              with backoff when the device goes away
//!   plugin     file → validated component: compile off the async threads, link, match a
//!              world, call describe()
//!   runtime    engine (pooling allocator, epoch ticker), linker, instance semaphore
//!   lane       connections whose plugin spins move to low-priority threads
//!   session    one connection: Store + instance, streams handed over, outcome logged,
//!              last bytes delivered, Store dropped
//!     stream     wasi input/output streams backed by the connection halves
//!     hub        rooms for cross-connection messages (the `hub` interface)
//!     logpipe    plugin stdout/stderr → host log
//!     limits     memory limiter, idle/duration watchdog
//!     cpu        CPU meter: the plugin's own code (budget), a poll's hold on its thread
//!     closer     host-initiated graceful close of one connection
//!     grants     what a plugin may touch: settings, a directory, stdio
//!     state      what a Store holds
//!   cache      compiled components on disk, keyed by content and engine
//! check      `switchboard check`
//! connect    `switchboard connect`: dial out, run a plugin with role `dialed`
//! bindings   wasmtime bindgen of wit/switchboard.wit
//! ```

#![deny(missing_docs)]

pub mod admission;
pub mod backoff;
pub mod bindings;
pub mod cache;
pub mod check;
pub mod cli;
pub mod closer;
pub mod config;
pub mod connect;
pub mod cpu;
pub mod datagram;
pub mod grants;
pub mod hub;
pub mod lane;
pub mod limits;
pub mod listen;
pub mod logpipe;
pub mod metrics;
pub mod plugin;
pub mod registry;
pub mod runtime;
pub mod serial;
pub mod serve;
pub mod service;
pub mod session;
pub mod state;
pub mod stream;
pub mod tcp;
pub mod udp;
pub mod udp_guard;
pub mod watch;
