//! The seed echo server as a plugin: every chunk read comes back as `Echo=>` + chunk.
//!
//! Setting `PREFIX` replaces `Echo=>`; an empty `PREFIX` gives plain RFC 862 echo.
//! The same component answers UDP datagrams with the same rule.

use std::io::BufRead;

use switchboard_sdk::{Connection, DatagramHandler, Plugin, PluginInfo, Result, StreamHandler, plugin_info, setting};

struct Echo;

fn prefix() -> Vec<u8> {
    setting("PREFIX", "Echo=>").into_bytes()
}

impl Plugin for Echo {
    fn describe() -> PluginInfo {
        plugin_info("echo", env!("CARGO_PKG_VERSION"), "replies Echo=> + each chunk read (PREFIX)", &["tcp:50007"])
    }
}

impl StreamHandler for Echo {
    fn handle(conn: &mut Connection) -> Result {
        let mut reply = prefix();
        let prefix_len = reply.len();
        loop {
            let chunk = conn.fill_buf()?;
            if chunk.is_empty() {
                return Ok(()); // the client closed its side
            }
            reply.truncate(prefix_len);
            reply.extend_from_slice(chunk);
            let n = chunk.len();
            conn.consume(n);
            conn.send(&reply)?;
        }
    }
}

impl DatagramHandler for Echo {
    fn handle_datagram(_peer: &str, payload: Vec<u8>) -> Vec<Vec<u8>> {
        let mut reply = prefix();
        reply.extend_from_slice(&payload);
        vec![reply]
    }
}

switchboard_sdk::export_full_plugin!(Echo);
