//! Listener addresses: `PORT | HOST:PORT | tcp:HOST:PORT | udp:HOST:PORT | serial:DEVICE[:BAUD] |
//! systemd:NAME`.

use std::fmt;
use std::str::FromStr;

use super::defaults::{BAUD as DEFAULT_BAUD, LISTEN_HOST as DEFAULT_HOST};

/// The transports a listener may name.
const TRANSPORTS: [&str; 4] = ["tcp", "udp", "serial", "systemd"];

/// Line speeds a serial listener accepts (the termios rates Linux offers).
pub const BAUD_RATES: [u32; 30] = [
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000,
    921600, 1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000,
];

/// Where a plugin is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP listener.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port; 0 picks a free one.
        port: u16,
    },
    /// A UDP socket.
    Udp {
        /// Host name or IP address.
        host: String,
        /// Port; 0 picks a free one.
        port: u16,
    },
    /// A serial device.
    Serial {
        /// Device path, e.g. `/dev/ttyUSB0`.
        device: String,
        /// Line speed.
        baud: u32,
    },
    /// A listening socket passed by systemd (socket activation), by its name
    /// (`FileDescriptorName=` of the `.socket` unit); TCP or UDP, whichever it is.
    Systemd {
        /// The socket's name in `LISTEN_FDNAMES`.
        name: String,
    },
}

/// A listener address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad listener {spec:?}: {reason} (expected PORT, HOST:PORT, tcp:HOST:PORT, udp:HOST:PORT, serial:DEVICE[:BAUD] or systemd:NAME)")]
pub struct ListenError {
    spec: String,
    reason: String,
}

fn host_port(spec: &str, rest: &str) -> Result<(String, u16), ListenError> {
    let err = |reason: &str| ListenError { spec: spec.to_string(), reason: reason.to_string() };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => (DEFAULT_HOST, rest),
    };
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host = bracketed.unwrap_or(host);
    if host.is_empty() {
        return Err(err("empty host"));
    }
    // An unbracketed host with a colon is an IPv6 address or a misspelt transport
    // (`tpc:1.2.3.4:80`).
    if bracketed.is_none() && host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        let first = host.split(':').next().unwrap_or_default();
        return Err(err(&format!("unknown transport {first:?} (the transports are {})", TRANSPORTS.join(", "))));
    }
    let port = port.parse::<u16>().map_err(|_| err(&format!("{port:?} is not a port number (0-65535)")))?;
    Ok((host.to_string(), port))
}

/// The transport `word` was probably meant to be: one edit (or a swap of two neighbours)
/// from a transport's name.
fn misspelt_transport(word: &str) -> Option<&'static str> {
    if word.is_empty() || !word.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let word = word.to_ascii_lowercase();
    TRANSPORTS.iter().copied().find(|t| *t != word && edit_distance(&word, t) <= 1)
}

/// Optimal string alignment distance (insertions, deletions, substitutions and swaps of
/// neighbours), for short words.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// `serial:DEVICE[:BAUD]`, after the `serial:`.
fn serial(spec: &str, rest: &str) -> Result<Listen, ListenError> {
    let err = |reason: String| ListenError { spec: spec.to_string(), reason };
    let (device, baud) = match rest.rsplit_once(':') {
        Some((device, baud)) if !baud.is_empty() && baud.chars().all(|c| c.is_ascii_digit()) => {
            let baud = baud
                .parse::<u32>()
                .ok()
                .filter(|b| BAUD_RATES.contains(b))
                .ok_or_else(|| err(format!("{baud} is not a baud rate a serial line can use (e.g. 9600, 19200, 115200, 921600)")))?;
            (device, baud)
        }
        // `DEVICE:abc`: a typo in the baud rate, unless a device of that whole name exists
        // (udev's by-path names hold colons, but also dots and dashes).
        Some((_, word)) if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric()) && !std::path::Path::new(rest).exists() => {
            return Err(err(format!("baud rate {word:?} is not a number")));
        }
        _ => (rest, DEFAULT_BAUD),
    };
    if device.is_empty() {
        return Err(err("empty device path".into()));
    }
    Ok(Listen::Serial { device: device.to_string(), baud })
}

/// `systemd:NAME`, after the `systemd:`: a name as systemd allows one in
/// `FileDescriptorName=` (1–255 printable ASCII characters, no colon).
fn systemd(spec: &str, name: &str) -> Result<Listen, ListenError> {
    let err = |reason: &str| ListenError { spec: spec.to_string(), reason: reason.to_string() };
    if name.is_empty() {
        return Err(err("empty socket name (the FileDescriptorName= of the .socket unit)"));
    }
    if name.len() > 255 || !name.chars().all(|c| c.is_ascii_graphic() && c != ':') {
        return Err(err("a socket name is 1-255 printable ASCII characters without ':' or spaces"));
    }
    Ok(Listen::Systemd { name: name.to_string() })
}

impl FromStr for Listen {
    type Err = ListenError;

    fn from_str(spec: &str) -> Result<Self, ListenError> {
        let spec = spec.trim();
        if let Some(rest) = spec.strip_prefix("serial:") {
            return serial(spec, rest);
        }
        if let Some(name) = spec.strip_prefix("systemd:") {
            return systemd(spec, name);
        }
        if let Some(rest) = spec.strip_prefix("udp:") {
            let (host, port) = host_port(spec, rest)?;
            return Ok(Listen::Udp { host, port });
        }
        if let Some(rest) = spec.strip_prefix("tcp:") {
            let (host, port) = host_port(spec, rest)?;
            return Ok(Listen::Tcp { host, port });
        }
        let (host, port) = host_port(spec, spec)?;
        if let Some(meant) = misspelt_transport(&host) {
            return Err(ListenError {
                spec: spec.to_string(),
                reason: format!("unknown transport {host:?} (did you mean {meant}?; if {host} is a host name, write tcp:{host}:{port})"),
            });
        }
        Ok(Listen::Tcp { host, port })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = |h: &str| if h.contains(':') { format!("[{h}]") } else { h.to_string() };
        match self {
            Listen::Tcp { host, port } => write!(f, "tcp:{}:{port}", bracket(host)),
            Listen::Udp { host, port } => write!(f, "udp:{}:{port}", bracket(host)),
            Listen::Serial { device, baud } => write!(f, "serial:{device}:{baud}"),
            Listen::Systemd { name } => write!(f, "systemd:{name}"),
        }
    }
}

/// Parses a comma-separated list of listeners.
pub fn parse_list(list: &str) -> Result<Vec<Listen>, ListenError> {
    list.split(',').map(str::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Listen {
        Listen::Tcp { host: host.into(), port }
    }

    #[test]
    fn every_documented_form_parses() {
        assert_eq!("50007".parse(), Ok(tcp("127.0.0.1", 50007)));
        assert_eq!("0.0.0.0:80".parse(), Ok(tcp("0.0.0.0", 80)));
        assert_eq!("tcp:50007".parse(), Ok(tcp("127.0.0.1", 50007)));
        assert_eq!("tcp:localhost:0".parse(), Ok(tcp("localhost", 0)));
        assert_eq!("[::1]:9".parse(), Ok(tcp("::1", 9)));
        assert_eq!("udp:127.0.0.1:0".parse(), Ok(Listen::Udp { host: "127.0.0.1".into(), port: 0 }));
        assert_eq!("serial:/dev/pts/3:115200".parse(), Ok(Listen::Serial { device: "/dev/pts/3".into(), baud: 115200 }));
        assert_eq!("serial:/dev/ttyUSB0".parse(), Ok(Listen::Serial { device: "/dev/ttyUSB0".into(), baud: DEFAULT_BAUD }));
        assert_eq!(parse_list("127.0.0.1:0,127.0.0.1:0").unwrap().len(), 2);
        assert_eq!("systemd:echo".parse(), Ok(Listen::Systemd { name: "echo".into() }));
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        for bad in ["", "udp:", "70000", "host:", ":80", "serial:", "tcp:1.2.3.4:x", "systemd:", "systemd:a:b", "systemd:a b"] {
            let err = bad.parse::<Listen>().unwrap_err().to_string();
            assert!(err.contains("expected PORT"), "{bad}: {err}");
        }
        assert!("70000".parse::<Listen>().unwrap_err().to_string().contains("not a port number"));
    }

    #[test]
    fn typos_in_transports_and_baud_rates_are_named() {
        for (bad, says) in [
            ("tpc:7007", "unknown transport \"tpc\" (did you mean tcp?"),
            ("upd:7007", "did you mean udp?"),
            ("tpc:1.2.3.4:80", "unknown transport \"tpc\""),
            ("serial:/dev/ttyUSB0:abc", "baud rate \"abc\" is not a number"),
            ("serial:/dev/ttyUSB0:123", "123 is not a baud rate"),
        ] {
            let err = bad.parse::<Listen>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!("localhost:80".parse(), Ok(tcp("localhost", 80)), "a host name is not a typo");
        assert_eq!("tcp:tpc:80".parse(), Ok(tcp("tpc", 80)), "a host named like a typo, said explicitly");
        assert_eq!(
            "serial:/dev/serial/by-path/pci-0000:00:14.0-usb-0:1:1.0-port0".parse(),
            Ok(Listen::Serial { device: "/dev/serial/by-path/pci-0000:00:14.0-usb-0:1:1.0-port0".into(), baud: DEFAULT_BAUD })
        );
    }

    #[test]
    fn display_round_trips() {
        for spec in ["tcp:127.0.0.1:5", "udp:[::1]:7", "serial:/dev/pts/3:115200", "systemd:chat.tcp"] {
            assert_eq!(spec.parse::<Listen>().unwrap().to_string(), spec);
        }
    }
}
