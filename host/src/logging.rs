//! The binary's logging: tracing-subscriber's text or JSON format on stderr, the level
//! from `RUST_LOG` (an invalid filter is an error, not a silent `info`), and one record
//! per line in either format.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: `TIME LEVEL span{fields}: message fields`.
    Text,
    /// One JSON object per line, with the connection's span fields (`plugin`, `id`,
    /// `peer`) as fields of `span` and `spans`.
    Json,
}

/// Why logging cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `RUST_LOG` does not parse as a filter.
    #[error("RUST_LOG={value:?} is not a valid log filter (e.g. `info`, `warn,switchboard=debug`)")]
    Filter {
        /// What it was set to.
        value: String,
        /// The parse error.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Installs the global subscriber: `default_filter` unless `RUST_LOG` is set.
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), LogError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::builder().parse(&value).map_err(|source| LogError::Filter { value, source })?,
        _ => EnvFilter::new(default_filter),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_writer(OneLine).with_ansi(std::io::stderr().is_terminal()).init(),
        // serde_json escapes newlines inside strings: every record is one line already.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// Stderr, with the newlines inside a record (a TOML error's excerpt, a trap's
/// backtrace) written as `⏎ `, so one record is one line for every log reader.
/// tracing-subscriber formats a whole record and writes it with one call, so each
/// `write` is one record ending in its own newline.
struct OneLine;

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter
    }
}

/// The writer [`OneLine`] makes.
struct OneLineWriter;

impl Write for OneLineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut stderr = std::io::stderr().lock();
        if !body.contains(&b'\n') {
            stderr.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for (i, part) in body.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                line.extend_from_slice("⏎ ".as_bytes());
            }
            line.extend_from_slice(part.strip_suffix(b"\r").unwrap_or(part));
        }
        line.push(b'\n');
        stderr.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
