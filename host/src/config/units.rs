//! The value syntaxes of flags and configuration files, each a type with `FromStr` (what
//! clap and the TOML readers parse with) and `Display` (what `--help` shows as default).
//!
//! One rule for "no limit": every limit that may be lifted takes `off`, and `0` means
//! the same. Durations are humantime's (`500ms`, `10s`, `2m`, `1h`, `1h 30m`); a bare
//! number is seconds. Sizes are `65536`, `512KiB`, `64MiB`, `1GiB` (also KB/MB/GB, powers
//! of 1000).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A value that does not parse: what was given and what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?}: {expected}")]
pub struct ValueError {
    /// The text given.
    pub given: String,
    /// What would have been accepted.
    pub expected: String,
}

impl ValueError {
    /// `given` is not a value of the kind `expected` describes.
    pub fn new(given: &str, expected: impl Into<String>) -> Self {
        ValueError { given: given.to_string(), expected: expected.into() }
    }
}

fn is_off(s: &str) -> bool {
    matches!(s, "off" | "none" | "0")
}

/// A duration: humantime syntax, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let s = s.trim();
    let expected = "expected a duration like 500ms, 10s, 2m or 1h";
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return s.parse::<f64>().ok().and_then(|n| Duration::try_from_secs_f64(n).ok()).ok_or_else(|| ValueError::new(s, expected));
    }
    humantime::parse_duration(s).map_err(|e| ValueError::new(s, format!("{expected} ({e})")))
}

/// Shows a duration the way [`parse_duration`] reads it (`10s`, `5m`).
fn show_duration(d: Duration, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}", humantime::format_duration(d))
}

/// A duration that must be given (a timeout that cannot be lifted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        parse_duration(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_duration(self.0, f)
    }
}

/// A duration limit that may be lifted: `off` (or `0`) for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalDuration(pub Option<Duration>);

impl FromStr for OptionalDuration {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if is_off(s) {
            return Ok(OptionalDuration(None));
        }
        let d = parse_duration(s).map_err(|e| ValueError::new(s, format!("{}, or off", e.expected)))?;
        Ok(OptionalDuration((!d.is_zero()).then_some(d)))
    }
}

impl fmt::Display for OptionalDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => show_duration(d, f),
            None => f.write_str("off"),
        }
    }
}

/// A size in bytes (`K`, `M`, `G` and `T` alone are the binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

const UNITS: [(&str, usize); 9] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

impl FromStr for Size {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let n: usize = number.parse().map_err(|_| ValueError::new(s, "expected a size like 64MiB"))?;
        let unit = match unit.trim() {
            "" => "B",
            "K" | "k" => "KiB",
            "M" | "m" => "MiB",
            "G" | "g" => "GiB",
            "T" | "t" => "TiB",
            other => other,
        };
        let factor = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, f)| *f)
            .ok_or_else(|| ValueError::new(s, format!("unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)")))?;
        n.checked_mul(factor).map(Size).ok_or_else(|| ValueError::new(s, "too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binary = UNITS.iter().filter(|(name, _)| name.ends_with("iB"));
        match binary.clone().find(|(_, factor)| self.0 >= *factor && self.0.is_multiple_of(*factor)) {
            Some((name, factor)) => write!(f, "{}{name}", self.0 / factor),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A count limit that may be lifted: `off` (or `0`) for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub Option<usize>);

impl FromStr for Count {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if is_off(s) {
            return Ok(Count(None));
        }
        s.parse().map(|n| Count(Some(n))).map_err(|_| ValueError::new(s, "expected a number, or off"))
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("off"),
        }
    }
}

/// A count that cannot be lifted (it sizes something): at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtLeastOne(pub usize);

impl FromStr for AtLeastOne {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(AtLeastOne(n)),
            _ => Err(ValueError::new(s, "expected a number of at least 1 (this limit cannot be lifted)")),
        }
    }
}

impl fmt::Display for AtLeastOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A rate per second (`50/s`, or a bare `50`) that may be lifted: `off` (or `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub Option<u32>);

impl FromStr for Rate {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if is_off(s) {
            return Ok(Rate(None));
        }
        let n = s.strip_suffix("/s").unwrap_or(s);
        match n.parse::<u32>() {
            Ok(0) => Ok(Rate(None)),
            Ok(n) => Ok(Rate(Some(n))),
            Err(_) => Err(ValueError::new(s, "expected a rate like 50/s, or off")),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}/s"),
            None => f.write_str("off"),
        }
    }
}

/// `--udp-amplification`: a factor of at least 1, or `off` for no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amplification(pub Option<u32>);

impl FromStr for Amplification {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.trim() {
            "off" => Ok(Amplification(None)),
            n => match n.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Amplification(Some(n))),
                _ => Err(ValueError::new(s, "expected how many times a datagram's size its replies may total, at least 1, or off")),
            },
        }
    }
}

impl fmt::Display for Amplification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("off"),
        }
    }
}

/// `--udp-replies-per-peer`: `N` or `N/s`, N ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepliesPerPeer(pub u32);

impl FromStr for RepliesPerPeer {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let n = s.trim().strip_suffix("/s").unwrap_or(s.trim());
        match n.parse::<u32>() {
            Ok(n) if n > 0 => Ok(RepliesPerPeer(n)),
            _ => Err(ValueError::new(s, "expected a number of replies per second, at least 1 (e.g. 100 or 100/s)")),
        }
    }
}

impl fmt::Display for RepliesPerPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("500ms".parse(), Ok(Dur(Duration::from_millis(500))));
        assert_eq!("2m".parse(), Ok(Dur(Duration::from_secs(120))));
        assert_eq!("3".parse(), Ok(Dur(Duration::from_secs(3))));
        assert_eq!("1h 30m".parse(), Ok(Dur(Duration::from_secs(5400))));
        assert!("3 weeks ago".parse::<Dur>().is_err());
        assert_eq!(Dur(Duration::from_secs(10)).to_string(), "10s");
        assert_eq!(Dur(Duration::from_secs(300)).to_string(), "5m");
    }

    #[test]
    fn off_and_zero_mean_no_limit_everywhere() {
        assert_eq!("off".parse(), Ok(OptionalDuration(None)));
        assert_eq!("0".parse(), Ok(OptionalDuration(None)));
        assert_eq!("0s".parse(), Ok(OptionalDuration(None)));
        assert_eq!("2s".parse(), Ok(OptionalDuration(Some(Duration::from_secs(2)))));
        assert_eq!("0".parse(), Ok(Count(None)));
        assert_eq!("off".parse(), Ok(Count(None)));
        assert_eq!("5".parse(), Ok(Count(Some(5))));
        assert_eq!("0".parse(), Ok(Rate(None)));
        assert_eq!("50/s".parse(), Ok(Rate(Some(50))));
        assert_eq!(OptionalDuration(None).to_string(), "off");
        assert_eq!(Rate(Some(50)).to_string(), "50/s");
        assert!("0".parse::<AtLeastOne>().unwrap_err().to_string().contains("at least 1"));
    }

    #[test]
    fn sizes() {
        assert_eq!("64MiB".parse(), Ok(Size(64 << 20)));
        assert_eq!("512KiB".parse(), Ok(Size(512 << 10)));
        assert_eq!("64M".parse(), Ok(Size(64 << 20)));
        assert_eq!("1000".parse(), Ok(Size(1000)));
        assert!("64 parsecs".parse::<Size>().unwrap_err().to_string().contains("unknown unit"));
        assert_eq!(Size(64 << 20).to_string(), "64MiB");
        assert_eq!(Size(1000).to_string(), "1000");
    }

    #[test]
    fn the_amplification_flag_takes_n_or_off() {
        assert_eq!("3".parse(), Ok(Amplification(Some(3))));
        assert_eq!("off".parse(), Ok(Amplification(None)));
        assert!("0".parse::<Amplification>().is_err());
        assert!("x".parse::<Amplification>().is_err());
    }

    #[test]
    fn the_reply_rate_takes_n_or_n_per_second() {
        assert_eq!("100".parse(), Ok(RepliesPerPeer(100)));
        assert_eq!("5000/s".parse(), Ok(RepliesPerPeer(5000)));
        assert!("0".parse::<RepliesPerPeer>().is_err());
        assert!("fast".parse::<RepliesPerPeer>().is_err());
    }
}
