//! End-to-end tests: start the real `switchboard` binary on 127.0.0.1:0, read its
//! `listening` lines, and talk to it over loopback like the seed clients do.
//!
//! Plugins come from `plugins/` and fixtures from `$SWITCHBOARD_FIXTURES`; both are built
//! by `cargo xtask test`, which is how this suite is meant to run.

mod activation;
mod admin;
mod browser;
mod budgets;
mod chat;
mod check;
mod echo;
mod faults;
mod getfile;
mod langs;
mod limits;
mod metrics;
mod multihost;
mod new;
mod ports;
mod privileges;
mod proxy;
mod reload;
mod running;
mod serial;
mod support;
mod tls;
mod tls_peers;
mod tls_session;
mod transcripts;
mod udp;
