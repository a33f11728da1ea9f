//! Listener addresses: `PORT | HOST:PORT | tcp:HOST:PORT | udp:HOST:PORT | serial:DEVICE[:BAUD]`.

use std::fmt;
use std::str::FromStr;

/// The host used when a listener names only a port.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Baud rate when a serial listener names none (pySerial's default).
pub const DEFAULT_BAUD: u32 = 9600;

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
}

/// A listener address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad listener {spec:?}: {reason} (expected PORT, HOST:PORT, tcp:HOST:PORT, udp:HOST:PORT or serial:DEVICE[:BAUD])")]
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
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(err("empty host"));
    }
    let port = port.parse::<u16>().map_err(|_| err(&format!("{port:?} is not a port number (0-65535)")))?;
    Ok((host.to_string(), port))
}

impl FromStr for Listen {
    type Err = ListenError;

    fn from_str(spec: &str) -> Result<Self, ListenError> {
        let spec = spec.trim();
        if let Some(rest) = spec.strip_prefix("serial:") {
            let (device, baud) = match rest.rsplit_once(':') {
                Some((device, baud)) if baud.chars().all(|c| c.is_ascii_digit()) && !baud.is_empty() => {
                    let baud =
                        baud.parse().map_err(|_| ListenError { spec: spec.into(), reason: format!("baud rate {baud} is too large") })?;
                    (device, baud)
                }
                _ => (rest, DEFAULT_BAUD),
            };
            if device.is_empty() {
                return Err(ListenError { spec: spec.into(), reason: "empty device path".into() });
            }
            return Ok(Listen::Serial { device: device.to_string(), baud });
        }
        if let Some(rest) = spec.strip_prefix("udp:") {
            let (host, port) = host_port(spec, rest)?;
            return Ok(Listen::Udp { host, port });
        }
        let rest = spec.strip_prefix("tcp:").unwrap_or(spec);
        let (host, port) = host_port(spec, rest)?;
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
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        for bad in ["", "udp:", "70000", "host:", ":80", "serial:", "tcp:1.2.3.4:x"] {
            let err = bad.parse::<Listen>().unwrap_err().to_string();
            assert!(err.contains("expected PORT"), "{bad}: {err}");
        }
        assert!("70000".parse::<Listen>().unwrap_err().to_string().contains("not a port number"));
    }

    #[test]
    fn display_round_trips() {
        for spec in ["tcp:127.0.0.1:5", "udp:[::1]:7", "serial:/dev/pts/3:115200"] {
            assert_eq!(spec.parse::<Listen>().unwrap().to_string(), spec);
        }
    }
}
