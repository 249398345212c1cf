//! The standard `process_*` metrics (as the Go and Python clients export them), read from
//! `/proc/self` at each scrape. prometheus-client has none of its own. Elsewhere than Linux the
//! series are simply absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug, Default)]
pub struct Process;

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: f64,
    pub resident_bytes: i64,
    pub virtual_bytes: i64,
    pub start_time_seconds: i64,
    pub open_fds: i64,
    pub max_fds: Option<i64>,
}

/// Parses `/proc/self/stat`: (utime + stime) in clock ticks, start time in ticks since boot,
/// virtual size in bytes, resident size in pages. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from the last ')'.
pub fn parse_stat(stat: &str) -> Option<(u64, u64, i64, i64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some((num(14)? + num(15)?, num(22)?, num(23)? as i64, num(24)? as i64))
}

/// The soft "Max open files" limit from `/proc/self/limits`.
pub fn parse_max_fds(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// The boot time (`btime`) from `/proc/stat`, in Unix seconds.
fn boot_time() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

pub fn sample() -> Option<Sample> {
    let (ticks, start_ticks, virtual_bytes, rss_pages) = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    // SAFETY: sysconf only reads a configuration value.
    let (tick_hz, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let tick_hz = if tick_hz > 0 { tick_hz as u64 } else { 100 };
    let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as i64).unwrap_or(0);
    Some(Sample {
        cpu_seconds: ticks as f64 / tick_hz as f64,
        resident_bytes: rss_pages * page.max(1),
        virtual_bytes,
        start_time_seconds: boot_time().unwrap_or(0) + (start_ticks / tick_hz) as i64,
        open_fds,
        max_fds: std::fs::read_to_string("/proc/self/limits").ok().as_deref().and_then(parse_max_fds),
    })
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = sample() else { return Ok(()) };
        let cpu = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.cpu_seconds).encode(cpu)?;
        let mut gauges = vec![
            ("process_resident_memory_bytes", "Resident memory size in bytes", s.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", s.virtual_bytes),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                s.start_time_seconds,
            ),
            ("process_open_fds", "Number of open file descriptors", s.open_fds),
        ];
        if let Some(max) = s.max_fds {
            gauges.push(("process_max_fds", "Maximum number of open file descriptors", max));
        }
        for (name, help, value) in gauges {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_past_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (hitl (op) x) S 1 2 3 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 12345 104857600 2560 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat(stat), Some((300, 12345, 104_857_600, 2560)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_the_soft_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63448                63448                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
    }

    #[test]
    fn samples_this_process() {
        let s = sample().expect("/proc/self is readable on Linux");
        let now = jiff::Timestamp::now().as_second();
        assert!(s.resident_bytes > 1 << 20, "{s:?}");
        assert!(s.open_fds >= 3, "{s:?}");
        assert!(s.start_time_seconds > now - 3600 && s.start_time_seconds <= now + 1, "{s:?} vs now {now}");
    }
}
