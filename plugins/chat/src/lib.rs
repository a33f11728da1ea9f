//! The developerWorks chatServer (port 2626) as a plugin: each connection is its own
//! instance, and the relay goes through a hub room.
//!
//! Wire format, as in the seed, every line ending in `\r\n`: a welcome line to the new
//! client; `Client joined HOST:PORT` to the others; each line a client sends goes to every
//! *other* client as `[HOST:PORT] line`; `Client left HOST:PORT` when it goes.
//! When the server shuts down, each client hears `* the server is shutting down; goodbye`.
//!
//! Beyond the seed: `/nick NAME` (later lines show `[NAME]`; join/leave notices keep the
//! address), `/who` (the members, to the asker only), `/quit`. Empty lines are not relayed.
//! A line longer than `MAX_LINE` bytes is relayed cut, ending in ` [cut]`.
//!
//! A line the hub refuses (the sender is over its publish budget) is not relayed; the
//! sender is told `* not relayed: over-budget`.
//!
//! Settings: `GREETING`, `ROOM` (hub room; default `chat`), `MAX_LINE` (default 4096, at
//! most 65,000 so that a relayed line always fits in one 64 KiB hub message).

use std::io::{BufRead, Write};

use switchboard_sdk::framing::LineSplitter;
use switchboard_sdk::{Connection, Event, Plugin, PluginInfo, Result, Room, StreamHandler, plugin_info, setting};

const DEFAULT_GREETING: &str = "You're connected to the switchboard chat server";
const MAX_NICK: usize = 32;
/// The longest `MAX_LINE`: tag, line, ` [cut]` and `\r\n` stay within the hub's 64 KiB.
const MAX_LINE_LIMIT: usize = 65_000;

struct Chat;

impl Plugin for Chat {
    fn describe() -> PluginInfo {
        plugin_info("chat", env!("CARGO_PKG_VERSION"), "the developerWorks chat server over a hub room", &["tcp:2626"])
    }
}

/// The sender's tag before a relayed line: `[HOST:PORT] ` or `[NAME] `. An IPv6 peer's
/// address is already bracketed (`[::1]:40150`), so it stands as it is instead of
/// becoming `[[::1]:40150]`.
fn tag(nick: &str) -> String {
    if nick.starts_with('[') { format!("{nick} ") } else { format!("[{nick}] ") }
}

/// One client's side of the room.
struct Client {
    addr: String,
    nick: String,
    quit: bool,
}

impl Client {
    /// Handles one complete line from the client.
    fn line(&mut self, conn: &mut Connection, room: &Room, line: &[u8], cut: bool) -> std::io::Result<()> {
        if line.is_empty() && !cut {
            return Ok(());
        }
        if !cut && line.starts_with(b"/") {
            return self.command(conn, room, &String::from_utf8_lossy(line));
        }
        let mut msg = tag(&self.nick).into_bytes();
        msg.extend_from_slice(line);
        if cut {
            msg.extend_from_slice(b" [cut]");
        }
        msg.extend_from_slice(b"\r\n");
        match room.publish(&msg) {
            Ok(()) => Ok(()),
            Err(e) => conn.write_all(format!("* not relayed: {}\r\n", e.name()).as_bytes()),
        }
    }

    fn command(&mut self, conn: &mut Connection, room: &Room, line: &str) -> std::io::Result<()> {
        let (cmd, arg) = line.split_once(' ').map_or((line, ""), |(c, a)| (c, a.trim()));
        match cmd {
            "/nick" => {
                if arg.is_empty()
                    || arg.len() > MAX_NICK
                    || arg.chars().any(|c| c.is_whitespace() || c.is_control() || c == '[' || c == ']')
                {
                    return conn.write_all(format!("* /nick NAME: 1-{MAX_NICK} characters, no spaces or brackets\r\n").as_bytes());
                }
                // A refused notice only means the others hear of it later; the name is short.
                let _ = room.publish(format!("* {} is now known as {arg}\r\n", self.nick).as_bytes());
                self.nick = arg.to_string();
                let _ = room.set_name(arg);
                conn.write_all(format!("* you are now known as {arg}\r\n").as_bytes())
            }
            "/who" => {
                let names = room.names();
                conn.write_all(format!("* {} here: {}\r\n", names.len(), names.join(", ")).as_bytes())
            }
            "/quit" => {
                self.quit = true;
                conn.write_all(b"* bye\r\n")
            }
            other => conn.write_all(format!("* unknown command {other}; try /nick NAME, /who, /quit\r\n").as_bytes()),
        }
    }

    /// The conversation, until the client closes, quits, or the connection fails.
    fn converse(&mut self, conn: &mut Connection, room: &Room, max_line: usize) -> std::io::Result<()> {
        let mut lines = LineSplitter::new(max_line);
        while !self.quit {
            let event = conn.wait(room);
            // Relay what the room has first, so a chatty client still hears the others.
            // Each in one host call (write, flush and wait) while it is short.
            while let Some(msg) = room.try_recv() {
                conn.send(&msg)?;
            }
            if event == Event::Input {
                let chunk = conn.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                let mut complete = Vec::new();
                lines.feed(chunk, |line, cut| complete.push((line.to_vec(), cut)));
                conn.consume(n);
                for (line, cut) in complete {
                    self.line(conn, room, &line, cut)?;
                    if self.quit {
                        break;
                    }
                }
            }
            conn.flush()?;
        }
        Ok(())
    }
}

impl StreamHandler for Chat {
    fn handle(conn: &mut Connection) -> Result {
        let max_line = setting("MAX_LINE", "4096").parse::<usize>().unwrap_or(4096).clamp(1, MAX_LINE_LIMIT);
        let room = Room::join(&setting("ROOM", "chat"));
        let addr = conn.peer().to_string();
        // Announce first: once a client sees its welcome, everyone already in the room has
        // been told, and nobody who joins later hears an old join.
        // Notices are best effort: a client over its publish budget is not told twice.
        let _ = room.publish(format!("Client joined {addr}\r\n").as_bytes());
        conn.send(format!("{}\r\n", setting("GREETING", DEFAULT_GREETING)).as_bytes())?;

        let mut client = Client { nick: addr.clone(), addr, quit: false };
        let result = client.converse(conn, &room, max_line);
        if conn.draining() {
            let _ = conn.send(b"* the server is shutting down; goodbye\r\n");
        }
        // However it ended (close, reset, /quit, host-side close), the others hear of it.
        let _ = room.publish(format!("Client left {}\r\n", client.addr).as_bytes());
        // A client that reset or went away mid-write ends quietly (the SDK sees to it).
        Ok(result?)
    }
}

switchboard_sdk::export_stream_plugin!(Chat);
