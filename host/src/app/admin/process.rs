//! The process collector: the host's own memory, CPU time, threads and descriptors, read
//! from `/proc/self` at scrape time, under the names every Prometheus client library
//! uses (`process_resident_memory_bytes`, `process_cpu_seconds_total`, …), so existing
//! dashboards and alerts work unchanged. prometheus-client has no collector of its own.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// What `/proc/self` tells about the process.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub(super) cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub(super) resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub(super) virtual_bytes: u64,
    /// Threads.
    pub(super) threads: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub(super) start_time_seconds: f64,
    /// Open file descriptors.
    pub(super) open_fds: u64,
    /// The soft limit on open file descriptors.
    pub(super) max_fds: u64,
}

/// Parses the fields of `/proc/self/stat` (see proc(5)); `boot_time` is `btime` from
/// `/proc/stat`, `ticks` the clock ticks per second, `page` the page size.
fn parse_stat(stat: &str, boot_time: u64, ticks: f64, page: u64) -> Option<ProcessStats> {
    // The command name (field 2) is in parentheses and may hold spaces or parentheses:
    // the fields after it start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field N is at index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let (utime, stime) = (field(14)?, field(15)?);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        threads: field(20)?,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        open_fds: 0,
        max_fds: 0,
    })
}

/// Reads the process's stats now; `None` where `/proc` is not there to read.
pub(super) fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time =
        std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ").and_then(|t| t.trim().parse().ok()))?;
    // SAFETY: sysconf and getrlimit only read process-wide values into locals.
    let (ticks, page, max_fds) = unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        let max_fds = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 { limit.rlim_cur } else { 0 };
        (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE), max_fds)
    };
    let mut stats = parse_stat(&stat, boot_time, ticks.max(1) as f64, page.max(1) as u64)?;
    // Less one: the descriptor reading the folder.
    stats.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count().saturating_sub(1) as u64).unwrap_or(0);
    stats.max_fds = max_fds;
    Some(stats)
}

/// Encodes the process's stats at every scrape.
#[derive(Debug)]
pub(super) struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = read() else { return Ok(()) };
        let gauges: [(&str, &str, Option<Unit>, f64); 6] = [
            ("process_resident_memory", "Resident memory size.", Some(Unit::Bytes), stats.resident_bytes as f64),
            ("process_virtual_memory", "Virtual memory size.", Some(Unit::Bytes), stats.virtual_bytes as f64),
            ("process_open_fds", "Open file descriptors.", None, stats.open_fds as f64),
            ("process_max_fds", "The limit on open file descriptors.", None, stats.max_fds as f64),
            ("process_threads", "Threads.", None, stats.threads as f64),
            ("process_start_time", "When the process started, since the Unix epoch.", Some(Unit::Seconds), stats.start_time_seconds),
        ];
        let cpu = encoder.encode_descriptor("process_cpu", "User and system CPU time spent.", Some(&Unit::Seconds), MetricType::Counter)?;
        ConstCounter::new(stats.cpu_seconds).encode(cpu)?;
        for (name, help, unit, value) in &gauges {
            let family = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            ConstGauge::new(*value).encode(family)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_whose_name_has_spaces_and_parentheses_is_read_by_field() {
        // Fields 1–24 of a real line, the command name made awkward.
        let line = "4242 (we ird) (name) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 2048";
        let s = parse_stat(line, 1_700_000_000, 100.0, 4096).unwrap();
        assert_eq!(s.cpu_seconds, 3.0, "(250 + 50) ticks at 100 per second");
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_bytes, 123_456_789);
        assert_eq!(s.resident_bytes, 2048 * 4096);
        assert_eq!(parse_stat("4242 (cut", 0, 100.0, 4096), None);
    }

    #[test]
    fn this_process_reads_as_itself() {
        let s = read().expect("/proc/self is readable on Linux");
        assert!(s.resident_bytes > 1 << 20, "{s:?}");
        assert!(s.open_fds >= 3 && s.open_fds <= s.max_fds, "{s:?}");
        assert!(s.threads >= 1 && s.start_time_seconds > 1.6e9, "{s:?}");
    }
}
