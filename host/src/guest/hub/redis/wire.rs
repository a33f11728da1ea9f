//! What the Redis backplane puts in Redis: message payloads, presence lists, the
//! subscription pattern. Every format starts with a version byte, so a host of a later
//! version can tell an old one's data from its own.
//!
//! - message: `1`, host id (u64 BE), member id (u64 BE), when it was published (u64
//!   BE, Unix microseconds on its host), the message bytes;
//! - presence: `1`, members on that host (u32 BE), entries (u32 BE), then per entry
//!   joined (u64 BE, Unix microseconds), name length (u16 BE), name (UTF-8).

/// The version byte of every format here.
const VERSION: u8 = 1;
const MESSAGE_HEADER: usize = 1 + 8 + 8 + 8;

/// A message payload.
pub(super) fn message(host: u64, member: u64, at: u64, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MESSAGE_HEADER + msg.len());
    out.push(VERSION);
    out.extend_from_slice(&host.to_be_bytes());
    out.extend_from_slice(&member.to_be_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// `(host, published at, message)` of a payload; `None` if it is not one of ours.
pub(super) fn parse_message(payload: &[u8]) -> Option<(u64, u64, &[u8])> {
    if payload.len() < MESSAGE_HEADER || payload[0] != VERSION {
        return None;
    }
    let host = u64::from_be_bytes(payload[1..9].try_into().ok()?);
    let at = u64::from_be_bytes(payload[17..25].try_into().ok()?);
    Some((host, at, &payload[MESSAGE_HEADER..]))
}

/// A host's presence in a room: `count` members, the oldest `names` as `(joined, name)`.
pub(super) fn presence(count: usize, names: &[(u64, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + names.iter().map(|(_, n)| 10 + n.len()).sum::<usize>());
    out.push(VERSION);
    out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_be_bytes());
    let names: Vec<_> = names.iter().filter(|(_, n)| n.len() <= usize::from(u16::MAX)).collect();
    out.extend_from_slice(&u32::try_from(names.len()).unwrap_or(u32::MAX).to_be_bytes());
    for (joined, name) in names {
        out.extend_from_slice(&joined.to_be_bytes());
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out
}

/// `(count, names)` of a presence value; `None` if it is not one of ours or is cut.
pub(super) fn parse_presence(value: &[u8]) -> Option<(usize, Vec<(u64, String)>)> {
    let mut r = Reader(value);
    if r.take(1)? != [VERSION] {
        return None;
    }
    let count = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
    let entries = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
    // Each entry is at least 10 bytes: a count that claims more than the value holds is
    // not believed (and allocates nothing).
    if entries > r.0.len() / 10 {
        return None;
    }
    let mut names = Vec::with_capacity(entries);
    for _ in 0..entries {
        let joined = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
        let len = u16::from_be_bytes(r.take(2)?.try_into().ok()?) as usize;
        names.push((joined, String::from_utf8(r.take(len)?.to_vec()).ok()?));
    }
    Some((count, names))
}

/// The pattern matching every room's channel: the prefix (its glob characters escaped),
/// then `*`.
pub(super) fn pattern(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_foreign_payloads_are_refused() {
        let payload = message(7, 9, 11, b"hi\r\n");
        assert_eq!(parse_message(&payload), Some((7, 11, &b"hi\r\n"[..])));
        assert_eq!(parse_message(&message(7, 9, 11, b"")), Some((7, 11, &b""[..])));
        assert_eq!(parse_message(b"hello from redis-cli"), None);
        assert_eq!(parse_message(&payload[..24]), None);
    }

    #[test]
    fn presence_round_trips_and_cut_values_are_refused() {
        let names = vec![(1, "a".to_string()), (2, "bob".to_string()), (3, "[::1]:4000 ü".to_string())];
        let value = presence(5, &names);
        assert_eq!(parse_presence(&value), Some((5, names.clone())));
        for cut in 0..value.len() {
            assert_eq!(parse_presence(&value[..cut]), None, "cut at {cut}");
        }
        let mut lying = presence(1, &[]);
        lying[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_presence(&lying), None);
    }

    #[test]
    fn the_pattern_escapes_the_prefix() {
        assert_eq!(pattern("switchboard:room:"), "switchboard:room:*");
        assert_eq!(pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }
}
