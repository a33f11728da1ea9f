//! The guest SDK for switchboard plugins written in Rust.
//!
//! A plugin is a type that implements [`Plugin`] (its self-description) and
//! [`StreamHandler`] and/or [`DatagramHandler`], exported with one macro:
//!
//! ```no_run
//! use switchboard_sdk::{Connection, Plugin, PluginInfo, Result, StreamHandler, plugin_info};
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn describe() -> PluginInfo {
//!         plugin_info("hello", env!("CARGO_PKG_VERSION"), "says hello", &["tcp:4000"])
//!     }
//! }
//! impl StreamHandler for Hello {
//!     fn handle(conn: &mut Connection) -> Result {
//!         conn.send(b"hello\r\n")?;
//!         Ok(())
//!     }
//! }
//! switchboard_sdk::export_stream_plugin!(Hello);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the result is a component
//! the host can load. Settings arrive as environment variables (`std::env::var`).
//!
//! Layout: [`conn`] (the connection as `std::io` types), [`room`] (hub rooms),
//! [`framing`] (bounded line / fixed-size / length-prefixed reads), [`files`] (granted
//! files sent by the host), [`error`],
//! [`worlds`] (the generated WIT bindings, for anything the wrappers don't cover).

#![deny(missing_docs)]

pub mod conn;
pub mod error;
pub mod files;
pub mod framing;
pub mod room;

/// The generated bindings of each plugin world; `full` also holds the imported interfaces.
pub mod worlds {
    pub use switchboard_world_datagram as datagram;
    pub use switchboard_world_full as full;
    pub use switchboard_world_stream as stream;
}

pub use conn::{Connection, Event};
pub use error::{Error, Result};
pub use room::Room;
pub use worlds::full::switchboard::plugin::hub::HubError;
pub use worlds::full::switchboard::plugin::tls::{PeerCertificate, TlsSession};
pub use worlds::full::switchboard::plugin::types::{ConnectionInfo, PluginInfo, Role, Transport};

/// The wasi:io bindings the streams are made of.
pub use worlds::full::wasi;

use worlds::full::wasi::io::streams::{InputStream, OutputStream};

/// What every plugin says about itself.
pub trait Plugin {
    /// Name, version, summary and default listeners; called once when the host loads it.
    fn describe() -> PluginInfo;
}

/// A plugin that serves byte streams (TCP connections, serial lines).
pub trait StreamHandler: Plugin {
    /// Serves one connection on a fresh instance. Whatever was written is delivered
    /// before the host closes the connection, whether this returns `Ok` or `Err`.
    fn handle(conn: &mut Connection) -> Result;
}

/// A plugin that answers datagrams (UDP).
pub trait DatagramHandler: Plugin {
    /// One datagram from `peer`; each returned payload is sent back to it.
    fn handle_datagram(peer: &str, payload: Vec<u8>) -> Vec<Vec<u8>>;
}

/// Builds a plugin's self-description from borrowed parts.
pub fn plugin_info(name: &str, version: &str, summary: &str, listen: &[&str]) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        version: version.into(),
        summary: summary.into(),
        listen: listen.iter().map(|s| s.to_string()).collect(),
    }
}

/// Reads a setting (an environment variable the operator set), or `default` if unset.
pub fn setting(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

/// Runs a [`StreamHandler`] on the streams the host handed over. Used by the export macros.
#[doc(hidden)]
pub fn run_stream<H: StreamHandler>(info: ConnectionInfo, input: InputStream, output: OutputStream) -> std::result::Result<(), String> {
    use std::io::Write;
    let mut conn = Connection::new(info, input, output);
    let result = H::handle(&mut conn);
    // Deliver what was written even when the handler failed.
    let flushed = conn.flush();
    // A peer that reset or closed while we read or wrote ends the conversation; that is
    // not an error of the plugin's, whatever the handler made of it.
    if conn.peer_gone() {
        return Ok(());
    }
    result.map_err(|e| e.to_string())?;
    flushed.map_err(|e| format!("flushing output: {e}"))
}

/// Exports a [`StreamHandler`] as a component of the `stream-plugin` world.
#[macro_export]
macro_rules! export_stream_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __SwitchboardExports;
        $crate::__impl_meta!($plugin, stream);
        $crate::__impl_handler!($plugin, stream);
        // Native builds (unit tests of a plugin's logic) carry no component exports.
        #[cfg(target_arch = "wasm32")]
        $crate::worlds::stream::export_world!(__SwitchboardExports with_types_in $crate::worlds::stream);
    };
}

/// Exports a [`DatagramHandler`] as a component of the `datagram-plugin` world.
#[macro_export]
macro_rules! export_datagram_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __SwitchboardExports;
        $crate::__impl_meta!($plugin, datagram);
        $crate::__impl_datagram!($plugin, datagram);
        // Native builds (unit tests of a plugin's logic) carry no component exports.
        #[cfg(target_arch = "wasm32")]
        $crate::worlds::datagram::export_world!(__SwitchboardExports with_types_in $crate::worlds::datagram);
    };
}

/// Exports a plugin that is both a [`StreamHandler`] and a [`DatagramHandler`]
/// (the `full-plugin` world).
#[macro_export]
macro_rules! export_full_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __SwitchboardExports;
        $crate::__impl_meta!($plugin, full);
        $crate::__impl_handler!($plugin, full);
        $crate::__impl_datagram!($plugin, full);
        // Native builds (unit tests of a plugin's logic) carry no component exports.
        #[cfg(target_arch = "wasm32")]
        $crate::worlds::full::export_world!(__SwitchboardExports with_types_in $crate::worlds::full);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __impl_meta {
    ($plugin:ty, $world:ident) => {
        impl $crate::worlds::$world::exports::switchboard::plugin::meta::Guest for __SwitchboardExports {
            fn describe() -> $crate::PluginInfo {
                <$plugin as $crate::Plugin>::describe()
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __impl_handler {
    ($plugin:ty, $world:ident) => {
        impl $crate::worlds::$world::exports::switchboard::plugin::handler::Guest for __SwitchboardExports {
            fn handle_connection(
                conn: $crate::ConnectionInfo,
                input: $crate::wasi::io::streams::InputStream,
                output: $crate::wasi::io::streams::OutputStream,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::run_stream::<$plugin>(conn, input, output)
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __impl_datagram {
    ($plugin:ty, $world:ident) => {
        impl $crate::worlds::$world::exports::switchboard::plugin::datagram_handler::Guest for __SwitchboardExports {
            fn handle_datagram(peer: ::std::string::String, payload: ::std::vec::Vec<u8>) -> ::std::vec::Vec<::std::vec::Vec<u8>> {
                <$plugin as $crate::DatagramHandler>::handle_datagram(&peer, payload)
            }
        }
    };
}
