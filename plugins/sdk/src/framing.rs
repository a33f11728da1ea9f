//! Message framing over a byte stream, as the seeds discuss it: TCP delivers one stream
//! of bytes, not messages, so a protocol needs delimiters (lines), fixed sizes or length
//! prefixes. Every helper here is bounded: a peer can never make a plugin buffer more than
//! the limit it passes in.
//!
//! The helpers work on any [`BufRead`]/[`Write`], so they are unit-tested natively and
//! used on a [`crate::Connection`] inside a plugin.

use std::io::{self, BufRead, ErrorKind, Read, Write};

/// How [`read_line`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A whole line; the terminator (`\n` or `\r\n`) was consumed and is not in the buffer.
    Complete,
    /// The line reached the limit before its end; the buffer holds the first `max` bytes
    /// and the rest of the line is still unread (see [`skip_line`]).
    TooLong,
    /// The stream ended after some bytes that were not terminated.
    Unterminated,
    /// The stream ended before any byte of a new line.
    Eof,
}

/// Reads one line into `line` (cleared first), without its `\n` or `\r\n`, keeping at most
/// `max` bytes of content.
///
/// On [`Line::TooLong`] the rest of the line is left unread (except a `\r` right at the
/// cut, which had to be read to see whether a `\n` followed), so a caller can refuse at
/// once or call [`skip_line`] and go on.
pub fn read_line<R: BufRead + ?Sized>(r: &mut R, line: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    line.clear();
    loop {
        let chunk = fill(r)?;
        if chunk.is_empty() {
            return Ok(if line.is_empty() { Line::Eof } else { Line::Unterminated });
        }
        let room = max - line.len();
        // Look one byte past the room: a `\n` there still ends a line that fits.
        let window = &chunk[..chunk.len().min(room + 1)];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&window[..i]);
            r.consume(i + 1);
            strip_cr(line);
            return Ok(Line::Complete);
        }
        let take = window.len().min(room);
        line.extend_from_slice(&window[..take]);
        r.consume(take);
        if line.len() == max {
            // The next byte decides between a line of exactly `max` bytes and a long one.
            return match fill(r)?.first() {
                None => Ok(Line::Unterminated),
                Some(b'\n') => {
                    r.consume(1);
                    strip_cr(line);
                    Ok(Line::Complete)
                }
                Some(b'\r') => {
                    r.consume(1);
                    if fill(r)?.first() == Some(&b'\n') {
                        r.consume(1);
                        Ok(Line::Complete)
                    } else {
                        Ok(Line::TooLong)
                    }
                }
                Some(_) => Ok(Line::TooLong),
            };
        }
    }
}

/// `fill_buf`, retried on `Interrupted`.
fn fill<R: BufRead + ?Sized>(r: &mut R) -> io::Result<&[u8]> {
    loop {
        match r.fill_buf() {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Re-borrow: the loop above cannot return the borrow directly (NLL limitation).
            Ok(_) => return r.fill_buf(),
            Err(e) => return Err(e),
        }
    }
}

fn strip_cr(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
}

/// Discards bytes up to and including the next `\n` (or to the end of the stream).
pub fn skip_line<R: BufRead + ?Sized>(r: &mut R) -> io::Result<()> {
    loop {
        let chunk = fill(r)?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                r.consume(n);
            }
        }
    }
}

/// Reads exactly `n` bytes: `None` if the stream ends cleanly before the first byte,
/// an `UnexpectedEof` error if it ends in the middle.
pub fn read_fixed<R: Read + ?Sized>(r: &mut R, n: usize) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0; n];
    let mut filled = 0;
    while filled < n {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "stream ended inside a fixed-size message")),
            Ok(k) => filled += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(buf))
}

/// Reads one frame prefixed by its length as a big-endian `u32`: `None` at a clean end of
/// stream; `InvalidData` if the announced length exceeds `max` (nothing is allocated).
pub fn read_frame<R: Read + ?Sized>(r: &mut R, max: usize) -> io::Result<Option<Vec<u8>>> {
    let Some(header) = read_fixed(r, 4)? else { return Ok(None) };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > max {
        return Err(io::Error::new(ErrorKind::InvalidData, format!("frame of {len} bytes exceeds the limit of {max}")));
    }
    match read_fixed(r, len)? {
        Some(payload) => Ok(Some(payload)),
        None if len == 0 => Ok(Some(Vec::new())),
        None => Err(io::Error::new(ErrorKind::UnexpectedEof, "stream ended after a frame header")),
    }
}

/// Writes one frame: the payload's length as a big-endian `u32`, then the payload.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::new(ErrorKind::InvalidInput, "frame longer than 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(payload)
}

/// Splits bytes that arrive in arbitrary pieces into whole lines, without blocking and
/// within a fixed memory bound: for event loops that cannot sit in [`read_line`] (a chat
/// waiting on its socket and a hub room at once).
///
/// Lines end with `\n` or `\r\n` (not included). A line longer than `max` bytes is cut:
/// its first `max` bytes are delivered flagged as cut as soon as they are known, and the
/// rest of it, up to its end, is dropped.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    discarding: bool,
}

impl LineSplitter {
    /// A splitter that keeps at most `max` bytes of a line.
    pub fn new(max: usize) -> Self {
        LineSplitter { buf: Vec::new(), max, discarding: false }
    }

    /// Feeds the next piece of the stream; `line(bytes, cut)` is called for every line
    /// it completes (or cuts).
    pub fn feed(&mut self, mut data: &[u8], mut line: impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            if self.discarding {
                match newline {
                    Some(i) => {
                        data = &data[i + 1..];
                        self.discarding = false;
                    }
                    None => return,
                }
                continue;
            }
            // Up to `max + 1` bytes may be held: the extra one can be the `\r` of a `\r\n`.
            let room = self.max + 1 - self.buf.len();
            match newline {
                Some(i) if i <= room => {
                    self.buf.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    if self.buf.last() == Some(&b'\r') {
                        self.buf.pop();
                    }
                    let cut = self.buf.len() > self.max;
                    line(&self.buf[..self.buf.len().min(self.max)], cut);
                    self.buf.clear();
                }
                _ => {
                    let take = data.len().min(room);
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    // Full, and the next byte (if known) is not the `\n` of a `\r\n`.
                    if self.buf.len() > self.max && (self.buf.last() != Some(&b'\r') || !data.is_empty()) {
                        line(&self.buf[..self.max], true);
                        self.buf.clear();
                        self.discarding = true;
                    }
                }
            }
        }
    }

    /// Bytes of an unfinished line held so far.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    /// A reader that hands out at most `step` bytes per read, like TCP splitting a stream.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn lines(input: &[u8], step: usize, max: usize) -> Vec<(Line, String)> {
        let mut r = BufReader::with_capacity(step, Trickle { data: input, step });
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            let status = read_line(&mut r, &mut line, max).unwrap();
            out.push((status, String::from_utf8_lossy(&line).into_owned()));
            match status {
                Line::Eof | Line::Unterminated => return out,
                Line::TooLong => skip_line(&mut r).unwrap(),
                Line::Complete => {}
            }
        }
    }

    #[test]
    fn lines_end_with_lf_or_crlf_whatever_the_chunking() {
        for step in [1, 2, 3, 7, 64] {
            assert_eq!(
                lines(b"spam\r\nSpam\nSPAM", step, 100),
                vec![(Line::Complete, "spam".into()), (Line::Complete, "Spam".into()), (Line::Unterminated, "SPAM".into()),],
                "step {step}"
            );
        }
    }

    #[test]
    fn empty_lines_and_clean_eof() {
        assert_eq!(
            lines(b"\n\r\nx\n", 4, 10),
            vec![(Line::Complete, "".into()), (Line::Complete, "".into()), (Line::Complete, "x".into()), (Line::Eof, "".into()),]
        );
    }

    #[test]
    fn long_lines_are_cut_at_the_limit_and_flagged() {
        for step in [1, 3, 5, 64] {
            assert_eq!(
                lines(b"abcdefgh\nabcd\nabcde\r\nok\n", step, 4),
                vec![
                    (Line::TooLong, "abcd".into()),
                    (Line::Complete, "abcd".into()),
                    (Line::TooLong, "abcd".into()),
                    (Line::Complete, "ok".into()),
                    (Line::Eof, "".into()),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn lines_of_exactly_the_limit_fit_with_either_ending() {
        for step in [1, 2, 4, 5, 64] {
            assert_eq!(
                lines(b"abcd\nabc\r\nabcd\r\nabcd\rx\n", step, 4),
                vec![
                    (Line::Complete, "abcd".into()),
                    (Line::Complete, "abc".into()),
                    (Line::Complete, "abcd".into()),
                    (Line::TooLong, "abcd".into()),
                    (Line::Eof, "".into()),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_line_never_buffers_beyond_the_limit() {
        let huge = vec![b'x'; 1 << 20];
        let mut r = BufReader::with_capacity(8192, Cursor::new(huge));
        let mut line = Vec::new();
        assert_eq!(read_line(&mut r, &mut line, 4096).unwrap(), Line::TooLong);
        assert_eq!(line.len(), 4096);
        assert!(line.capacity() < 64 * 1024);
    }

    #[test]
    fn fixed_size_messages() {
        let mut r = Trickle { data: b"0123456789ab", step: 5 };
        assert_eq!(read_fixed(&mut r, 8).unwrap().unwrap(), b"01234567");
        let err = read_fixed(&mut r, 8).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        assert_eq!(read_fixed(&mut r, 8).unwrap(), None);
    }

    #[test]
    fn frames_round_trip_and_respect_the_limit() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").unwrap();
        write_frame(&mut wire, b"").unwrap();
        write_frame(&mut wire, &[7u8; 300]).unwrap();
        let mut r = Trickle { data: &wire, step: 3 };
        assert_eq!(read_frame(&mut r, 1000).unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, 1000).unwrap().unwrap(), b"");
        assert_eq!(read_frame(&mut r, 1000).unwrap().unwrap(), vec![7u8; 300]);
        assert_eq!(read_frame(&mut r, 1000).unwrap(), None);

        let mut r = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        assert_eq!(read_frame(&mut r, 1 << 20).unwrap_err().kind(), ErrorKind::InvalidData);
        let mut r = Cursor::new(vec![0, 0, 0, 9, 1, 2]);
        assert_eq!(read_frame(&mut r, 100).unwrap_err().kind(), ErrorKind::UnexpectedEof);
    }

    fn split(pieces: &[&[u8]], max: usize) -> Vec<(String, bool)> {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        for piece in pieces {
            splitter.feed(piece, |line, cut| out.push((String::from_utf8_lossy(line).into_owned(), cut)));
            assert!(splitter.pending().len() <= max + 1);
        }
        out
    }

    #[test]
    fn splitter_joins_pieces_and_splits_packed_lines() {
        let want = vec![("hello there".to_string(), false), ("a".into(), false), ("".into(), false), ("b".into(), false)];
        assert_eq!(split(&[b"hel", b"lo th", b"ere\r", b"\na\n\r\nb\n"], 100), want);
        let whole = b"hello there\r\na\n\r\nb\n";
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(split(&bytes, 100), want);
    }

    #[test]
    fn splitter_cuts_long_lines_and_drops_their_rest() {
        for step in [1, 2, 3, 100] {
            let input = b"abcd\r\nabcde\nabcdefghij\nok\nabc\rx\n";
            let pieces: Vec<&[u8]> = input.chunks(step).collect();
            assert_eq!(
                split(&pieces, 4),
                vec![
                    ("abcd".to_string(), false),
                    ("abcd".into(), true),
                    ("abcd".into(), true),
                    ("ok".into(), false),
                    ("abc\r".into(), true),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn splitter_memory_stays_bounded_on_an_endless_line() {
        let mut splitter = LineSplitter::new(4096);
        let mut cuts = 0;
        for _ in 0..1000 {
            splitter.feed(&[b'x'; 1000], |line, cut| {
                assert!(cut && line.len() == 4096);
                cuts += 1;
            });
            assert!(splitter.pending().len() <= 4097);
        }
        assert_eq!(cuts, 1, "one cut line; the rest of it is dropped");
    }
}
