//! getfile (Programming Python, §10.5) as a plugin; wire-compatible with getfile.py.
//!
//! Server (role `accepted`, port 50001): the client sends a file name and `\n` (or
//! `\r\n`); the server sends the file's raw bytes and closes. It serves only from the
//! directory the operator granted (`serve --dir getfile=ROOT`, seen here as `/`) and
//! checks every name itself rather than trusting the preopen alone: empty, absolute,
//! `..`, NUL, non-UTF-8, over-long, directories, missing files and any path through a
//! symbolic link are refused — the connection closes without a byte, and the reason is
//! logged. The bytes themselves never pass through the plugin: it opens the file and the
//! host splices it into the connection ([`switchboard_sdk::files`]).
//!
//! Client (role `dialed`, `switchboard connect HOST:PORT --plugin getfile.wasm --set
//! FILE=name`): sends `name\n`, saves the reply under the name's last component in the
//! current directory, and prints the seed's `Client got NAME at TIME`. A refused request
//! (no bytes) leaves no file behind and fails.

pub mod names;

use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use switchboard_sdk::files;
use switchboard_sdk::framing::{Line, read_line};
use switchboard_sdk::{Connection, Error, Plugin, PluginInfo, Result, Role, StreamHandler, plugin_info};

/// Longest file name accepted, in bytes.
const MAX_NAME: usize = 4096;

struct GetFile;

impl Plugin for GetFile {
    fn describe() -> PluginInfo {
        plugin_info(
            "getfile",
            env!("CARGO_PKG_VERSION"),
            "getfile.py's file server and client, confined to a granted directory",
            &["tcp:50001"],
        )
    }
}

impl StreamHandler for GetFile {
    fn handle(conn: &mut Connection) -> Result {
        match conn.info().role {
            Role::Accepted => serve(conn),
            Role::Dialed => fetch(conn),
        }
    }
}

/// Server side: one name in, the file's bytes out.
fn serve(conn: &mut Connection) -> Result {
    let mut line = Vec::new();
    let why = match read_line(conn, &mut line, MAX_NAME)? {
        Line::Complete => match names::resolve(&line) {
            Ok(path) => match send_file(conn, &path) {
                Ok(()) => return Ok(()),
                Err(Refusal(why)) => why,
            },
            Err(why) => why,
        },
        Line::TooLong => format!("name longer than {MAX_NAME} bytes"),
        Line::Unterminated | Line::Eof => "the client sent no complete name line".to_string(),
    };
    // Logged by the host with this connection's id; the client just sees the close.
    println!("refused {:?} from {}: {why}", String::from_utf8_lossy(&line[..line.len().min(200)]), conn.peer());
    Ok(())
}

/// Why a request gets no file.
struct Refusal(String);

fn send_file(conn: &mut Connection, path: &Path) -> std::result::Result<(), Refusal> {
    let name = path.to_str().ok_or_else(|| Refusal("the name is not UTF-8".to_string()))?;
    let file = files::open(name).map_err(|e| Refusal(format!("cannot open: {e}")))?;
    if let Err(e) = conn.send_file(&file)
        && !conn.peer_gone()
    {
        // Mid-transfer: the client gets a short file, as getfile.py's would.
        println!("read error on {}: {e}", path.display());
    }
    // A client that went away just ends the transfer.
    Ok(())
}

/// Client side: ask for `FILE`, save it in the current directory.
fn fetch(conn: &mut Connection) -> Result {
    let name = std::env::var("FILE").map_err(|_| Error::msg("set FILE=NAME: the file to fetch"))?;
    let local = names::local_name(&name).ok_or_else(|| Error::msg(format!("{name:?} has no file name to save under")))?;
    conn.send(format!("{name}\n").as_bytes())?;

    // Nothing is created until the first byte arrives: a refusal leaves no file behind.
    let first = conn.fill_buf()?;
    if first.is_empty() {
        return Err(Error::msg(format!("the server sent nothing for {name:?} (refused, missing, or empty)")));
    }
    let partial = PathBuf::from(format!("/.{local}.part"));
    let mut out = File::create(&partial)?;
    let copied = (|| -> std::io::Result<()> {
        loop {
            let chunk = conn.fill_buf()?;
            if chunk.is_empty() {
                return out.flush();
            }
            out.write_all(chunk)?;
            let n = chunk.len();
            conn.consume(n);
        }
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    std::fs::rename(&partial, format!("/{local}"))?;
    println!("Client got {name} at {}", names::ctime(std::time::SystemTime::now()));
    Ok(())
}

switchboard_sdk::export_stream_plugin!(GetFile);
