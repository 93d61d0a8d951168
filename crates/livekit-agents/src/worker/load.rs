//! Process CPU load, aware of container CPU limits.
//!
//! The default load of an agent server is the CPU time it used over the last 5 seconds divided
//! by the CPU capacity it may use. Inside a container the capacity is the cgroup quota
//! (v2 `cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`) and the usage is the cgroup's own
//! counter (v2 `cpu.stat` `usage_usec`, v1 `cpuacct.usage`); elsewhere the capacity is the number
//! of CPUs and the usage is this process's user+system time from `/proc/self/stat`.
//! On systems without these files the load reads as 0.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Number of samples kept; with the 0.5 s sampling interval this is the reference's 5 s window.
pub const DEFAULT_WINDOW_SAMPLES: usize = 11;

/// Where CPU usage is read from.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuSource {
    /// cgroup v2: `cpu.stat` (`usage_usec`) in this directory.
    CgroupV2 {
        /// Path of the `cpu.stat` file.
        stat: PathBuf,
    },
    /// cgroup v1: `cpuacct.usage` (nanoseconds).
    CgroupV1 {
        /// Path of the `cpuacct.usage` file.
        usage: PathBuf,
    },
    /// This process only: `/proc/self/stat` utime + stime (clock ticks at 100 Hz).
    ProcSelf,
    /// Nothing readable: the load is always 0.
    Unavailable,
}

/// Parses cgroup v2 `cpu.max` (`"<quota> <period>"` or `"max <period>"`) into a number of
/// CPUs; `None` when unlimited or malformed.
pub fn parse_cgroup_v2_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: f64 = parts.next()?.parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0).then_some(quota / period)
}

/// Parses cgroup v1 quota and period files into a number of CPUs; `None` when unlimited (`-1`).
pub fn parse_cgroup_v1_quota(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then_some(quota / period)
}

/// Reads `usage_usec` from cgroup v2 `cpu.stat`, in seconds.
pub fn parse_cgroup_v2_usage(text: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        (it.next()? == "usage_usec")
            .then(|| it.next()?.parse::<u64>().ok())
            .flatten()
            .map(|us| us as f64 / 1e6)
    })
}

/// Reads utime + stime (fields 14 and 15) from `/proc/<pid>/stat`, in seconds (100 Hz ticks).
pub fn parse_proc_stat_cpu(text: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Reads the resident set size of this process (`VmRSS` in `/proc/self/status`), in MiB.
pub fn process_rss_mb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("VmRSS:")?;
        let kb: f64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb / 1024.0)
    })
}

/// Sliding-window CPU load meter.
#[derive(Debug)]
pub struct CpuLoad {
    source: CpuSource,
    cpus: f64,
    window: VecDeque<(Instant, f64)>,
    capacity: usize,
}

impl CpuLoad {
    /// Detects the container limits (cgroup v2, then v1) under `/sys/fs/cgroup`, falling back
    /// to this process's CPU time over all available CPUs.
    pub fn detect() -> Self {
        Self::detect_in(Path::new("/sys/fs/cgroup"))
    }

    /// Like [`CpuLoad::detect`] with another cgroup root (for tests).
    pub fn detect_in(root: &Path) -> Self {
        let host_cpus = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        let v2_max = std::fs::read_to_string(root.join("cpu.max")).ok();
        let v2_stat = root.join("cpu.stat");
        if let Some(max) = v2_max {
            if std::fs::read_to_string(&v2_stat)
                .ok()
                .and_then(|s| parse_cgroup_v2_usage(&s))
                .is_some()
            {
                let cpus = parse_cgroup_v2_cpu_max(&max).unwrap_or(host_cpus);
                return Self::new(CpuSource::CgroupV2 { stat: v2_stat }, cpus);
            }
        }
        let v1_quota = std::fs::read_to_string(root.join("cpu/cpu.cfs_quota_us")).ok();
        let v1_period = std::fs::read_to_string(root.join("cpu/cpu.cfs_period_us")).ok();
        let v1_usage = root.join("cpuacct/cpuacct.usage");
        if let (Some(q), Some(p)) = (v1_quota, v1_period) {
            if let Some(cpus) = parse_cgroup_v1_quota(&q, &p) {
                if v1_usage.exists() {
                    return Self::new(CpuSource::CgroupV1 { usage: v1_usage }, cpus);
                }
            }
        }
        if Path::new("/proc/self/stat").exists() {
            Self::new(CpuSource::ProcSelf, host_cpus)
        } else {
            Self::new(CpuSource::Unavailable, host_cpus)
        }
    }

    /// A meter over an explicit source and CPU capacity.
    pub fn new(source: CpuSource, cpus: f64) -> Self {
        Self {
            source,
            cpus: cpus.max(0.01),
            window: VecDeque::new(),
            capacity: DEFAULT_WINDOW_SAMPLES,
        }
    }

    /// The source in use.
    pub fn source(&self) -> &CpuSource {
        &self.source
    }

    /// The CPU capacity (number of CPUs, possibly fractional) the load is relative to.
    pub fn cpus(&self) -> f64 {
        self.cpus
    }

    fn read_usage(&self) -> Option<f64> {
        match &self.source {
            CpuSource::CgroupV2 { stat } => {
                parse_cgroup_v2_usage(&std::fs::read_to_string(stat).ok()?)
            }
            CpuSource::CgroupV1 { usage } => std::fs::read_to_string(usage)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
                .map(|ns| ns as f64 / 1e9),
            CpuSource::ProcSelf => {
                parse_proc_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
            }
            CpuSource::Unavailable => None,
        }
    }

    /// Takes a sample now and returns the load over the window, in `[0, 1]`.
    pub fn sample(&mut self) -> f32 {
        match self.read_usage() {
            Some(usage) => self.push(Instant::now(), usage),
            None => 0.0,
        }
    }

    /// Adds a sample `(time, cumulative CPU seconds)` and returns the windowed load.
    pub fn push(&mut self, at: Instant, cpu_seconds: f64) -> f32 {
        self.window.push_back((at, cpu_seconds));
        while self.window.len() > self.capacity {
            self.window.pop_front();
        }
        let (Some(first), Some(last)) = (self.window.front(), self.window.back()) else {
            return 0.0;
        };
        let wall = last.0.saturating_duration_since(first.0).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        let used = (last.1 - first.1).max(0.0);
        (used / (wall * self.cpus)).clamp(0.0, 1.0) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_cgroup_files() {
        assert_eq!(parse_cgroup_v2_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cgroup_v2_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cgroup_v2_cpu_max("garbage"), None);
        assert_eq!(parse_cgroup_v1_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cgroup_v1_quota("50000\n", "100000\n"), Some(0.5));
        let stat = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n";
        assert_eq!(parse_cgroup_v2_usage(stat), Some(2.5));
        assert_eq!(parse_cgroup_v2_usage("nothing 1"), None);
    }

    #[test]
    fn parses_proc_stat_with_spaces_in_name() {
        let line = "1234 (my agent) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0";
        assert_eq!(parse_proc_stat_cpu(line), Some(3.0));
        assert_eq!(parse_proc_stat_cpu("broken"), None);
    }

    #[test]
    fn window_average_is_relative_to_capacity() {
        let mut load = CpuLoad::new(CpuSource::Unavailable, 2.0);
        let t0 = Instant::now();
        assert_eq!(load.push(t0, 10.0), 0.0);
        // 1 CPU-second used over 1 s of wall time on 2 CPUs = 0.5.
        let l = load.push(t0 + Duration::from_secs(1), 11.0);
        assert!((l - 0.5).abs() < 1e-6);
        // Clamped to 1.
        let l = load.push(t0 + Duration::from_secs(2), 20.0);
        assert_eq!(l, 1.0);
    }

    #[test]
    fn detects_cgroup_v2_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("cpu.max"), "150000 100000\n").unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 100\n").unwrap();
        let load = CpuLoad::detect_in(dir);
        assert!(matches!(load.source(), CpuSource::CgroupV2 { .. }));
        assert!((load.cpus() - 1.5).abs() < 1e-9);
    }
}
