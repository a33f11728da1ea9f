//! The transcript format of `switchboard test` and `serve --record`: a text file, one
//! step per line, binary safe through escapes.
//!
//! ```text
//! # a comment; blank lines are ignored too
//! > Hello, world          the client sends these bytes (no newline is added)
//! < Echo=>Hello, world    the server must send these bytes next
//! > line\r\n              escapes: \\ \n \r \t \0 \xNN
//! closes                  the client closes its side
//! eof                     the server must close (and send nothing more)
//! alice connects from 127.0.0.1:5555
//! alice> hi\r\n           a named client (several clients share the plugin's hub)
//! bob< [127.0.0.1:5555] hi\r\n
//! ```

use std::fmt::Write as _;

/// One step of a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The client connects, from this peer address if given.
    Connect(Option<String>),
    /// The client sends bytes.
    Send(Vec<u8>),
    /// The server must send these bytes next.
    Expect(Vec<u8>),
    /// The client closes its side (shuts down writing).
    Close,
    /// The server must close its side, with nothing more sent.
    Eof,
}

/// A step and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// Its line number (from 1).
    pub(crate) line: usize,
    /// The client's name; empty for the one unnamed client.
    pub(crate) client: String,
    /// What happens.
    pub(crate) action: Action,
}

/// A line that is not a transcript step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TranscriptError {
    /// The line number (from 1).
    pub line: usize,
    /// What is wrong, and what is expected.
    pub message: String,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// Parses a transcript.
pub(crate) fn parse(text: &str) -> Result<Vec<Step>, TranscriptError> {
    let mut steps = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let body = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let error = |message: String| TranscriptError { line, message };
        let name_end = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
        let (word, rest) = body.split_at(name_end);
        let (client, action) = if let Some(dir) = rest.chars().next().filter(|c| *c == '>' || *c == '<') {
            let data = &rest[1..];
            let data = match data.strip_prefix(' ') {
                Some(data) => data,
                None if data.is_empty() => data,
                None => return Err(error(format!("after `{dir}` put one space, then the bytes"))),
            };
            let bytes = unescape(data).map_err(error)?;
            (word, if dir == '>' { Action::Send(bytes) } else { Action::Expect(bytes) })
        } else if rest.is_empty() || (word == "connects" && rest.starts_with(" from ")) {
            ("", keyword(body).map_err(error)?)
        } else if let Some(words) = rest.strip_prefix(' ') {
            (word, keyword(words).map_err(error)?)
        } else {
            return Err(error(format!(
                "cannot read {body:?}: a step is `> BYTES`, `< BYTES`, `connects [from ADDR]`, `closes` or `eof`, each optionally after a client name"
            )));
        };
        steps.push(Step { line, client: client.to_string(), action });
    }
    Ok(steps)
}

fn keyword(words: &str) -> Result<Action, String> {
    let mut parts = words.split(' ');
    let action = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("connects"), None, ..) => Action::Connect(None),
        (Some("connects"), Some("from"), Some(addr), None) if !addr.is_empty() => Action::Connect(Some(addr.to_string())),
        (Some("closes"), None, ..) => Action::Close,
        (Some("eof"), None, ..) => Action::Eof,
        _ => {
            return Err(format!("unknown step {words:?}: expected `connects`, `connects from HOST:PORT`, `closes` or `eof`"));
        }
    };
    Ok(action)
}

/// Decodes the escapes `\\ \n \r \t \0 \xNN`; every other character stands for its UTF-8
/// bytes.
pub(crate) fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.char_indices();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let byte = match chars.next().map(|(_, c)| c) {
            Some('\\') => b'\\',
            Some('n') => b'\n',
            Some('r') => b'\r',
            Some('t') => b'\t',
            Some('0') => 0,
            Some('x') => {
                let hex = s.get(at + 2..at + 4).filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
                let Some(hex) = hex else { return Err(format!("column {}: `\\x` takes two hex digits", at + 1)) };
                chars.next();
                chars.next();
                u8::from_str_radix(hex, 16).expect("two hex digits")
            }
            other => {
                let got = other.map_or("the end of the line".to_string(), |c| format!("`\\{c}`"));
                return Err(format!("column {}: unknown escape {got}; use \\\\ \\n \\r \\t \\0 or \\xNN", at + 1));
            }
        };
        out.push(byte);
    }
    Ok(out)
}

/// Encodes bytes for a transcript line: printable ASCII as it is, `\\ \n \r \t` and
/// `\xNN` for the rest (and for a trailing space, which editors strip).
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b' ' if i + 1 == bytes.len() => out.push_str("\\x20"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Splits bytes into transcript lines: one per `\n` (which ends its line), and the rest.
pub(crate) fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|b| *b == b'\n').collect()
}

/// Who sent bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// The client (`>`).
    Client,
    /// The server, that is the plugin (`<`).
    Server,
}

impl Dir {
    fn mark(self) -> char {
        match self {
            Dir::Client => '>',
            Dir::Server => '<',
        }
    }
}

/// Builds a transcript from a conversation's bytes as they pass: a line per `\n`, and a
/// line for what is pending when the other side speaks.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    pending: Option<(Dir, Vec<u8>)>,
    out: String,
}

impl Builder {
    /// Bytes `dir` sent.
    pub(crate) fn bytes(&mut self, dir: Dir, mut data: &[u8]) {
        if self.pending.as_ref().is_some_and(|(d, _)| *d != dir) {
            self.flush();
        }
        while !data.is_empty() {
            let (chunk, rest) = match data.iter().position(|b| *b == b'\n') {
                Some(i) => data.split_at(i + 1),
                None => (data, &[][..]),
            };
            let pending = &mut self.pending.get_or_insert_with(|| (dir, Vec::new())).1;
            pending.extend_from_slice(chunk);
            if chunk.ends_with(b"\n") {
                self.flush();
            }
            data = rest;
        }
    }

    /// A keyword step (`closes`, `eof`, a `# comment`), after what is pending.
    pub(crate) fn event(&mut self, line: &str) {
        self.flush();
        self.out.push_str(line);
        self.out.push('\n');
    }

    /// Writes out what is pending.
    pub(crate) fn flush(&mut self) {
        if let Some((dir, bytes)) = self.pending.take() {
            let _ = writeln!(self.out, "{} {}", dir.mark(), escape(&bytes));
        }
    }

    /// The finished lines so far.
    pub(crate) fn take(&mut self) -> String {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse() {
        let text = "# seed\n> Hello, world\n< Echo=>Hello, world\n\nalice connects from 127.0.0.1:5\nbob> a\\r\\n\nbob<\ncloses\neof\nconnects from 1.2.3.4:5\nalice closes\n";
        let steps = parse(text).unwrap();
        let got: Vec<_> = steps.iter().map(|s| (s.line, s.client.as_str(), s.action.clone())).collect();
        assert_eq!(
            got,
            vec![
                (2, "", Action::Send(b"Hello, world".to_vec())),
                (3, "", Action::Expect(b"Echo=>Hello, world".to_vec())),
                (5, "alice", Action::Connect(Some("127.0.0.1:5".into()))),
                (6, "bob", Action::Send(b"a\r\n".to_vec())),
                (7, "bob", Action::Expect(Vec::new())),
                (8, "", Action::Close),
                (9, "", Action::Eof),
                (10, "", Action::Connect(Some("1.2.3.4:5".into()))),
                (11, "alice", Action::Close),
            ]
        );
    }

    #[test]
    fn bad_lines_say_where_and_what() {
        assert_eq!(parse("> ok\n>no space").unwrap_err().line, 2);
        assert!(parse("> \\q").unwrap_err().message.contains("unknown escape `\\q`"));
        assert!(parse("> \\x4").unwrap_err().message.contains("two hex digits"));
        assert!(parse("alice shouts").unwrap_err().message.contains("unknown step"));
        assert!(parse("hello there!").unwrap_err().message.contains("unknown step"));
    }

    #[test]
    fn escapes_round_trip_every_byte() {
        let all: Vec<u8> = (0..=255).chain([b' ']).collect();
        let line = escape(&all);
        assert!(line.is_ascii() && !line.contains('\n') && !line.ends_with(' '), "{line}");
        assert_eq!(unescape(&line).unwrap(), all);
        assert_eq!(unescape("é").unwrap(), "é".as_bytes());
    }

    #[test]
    fn the_builder_keeps_order_and_lines() {
        let mut b = Builder::default();
        b.bytes(Dir::Client, b"Hel");
        b.bytes(Dir::Client, b"lo\na");
        b.bytes(Dir::Server, b"x\r\ny\r\n");
        b.event("closes");
        b.bytes(Dir::Server, b"end");
        b.flush();
        assert_eq!(b.take(), "> Hello\\n\n> a\n< x\\r\\n\n< y\\r\\n\ncloses\n< end\n");
    }
}
