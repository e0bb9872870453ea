//! CPU time and memory of a process, read from `/proc` (through the
//! `procfs` crate), for the report's server figures and the load
//! generator's own cost per delivery.

use std::time::Duration;

use procfs::process::Process;
use serde::{Deserialize, Serialize};

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcSample {
    /// User + system CPU time so far, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory now, in bytes.
    pub rss_bytes: u64,
    /// Peak resident memory so far (`VmHWM`), in bytes.
    pub peak_rss_bytes: u64,
}

/// Reads `pid` (or this process); `None` when the process is gone.
pub fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let process = match pid {
        Some(pid) => Process::new(i32::try_from(pid).ok()?),
        None => Process::myself(),
    }
    .ok()?;
    let stat = process.stat().ok()?;
    let status = process.status().ok()?;
    let kib = |value: Option<u64>| value.unwrap_or(0) * 1024;
    Some(ProcSample {
        // utime and stime count the kernel's USER_HZ clock ticks.
        cpu_seconds: (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64,
        rss_bytes: kib(status.vmrss),
        peak_rss_bytes: kib(status.vmhwm),
    })
}

/// CPU used between two samples over `wall`, as a share of one core.
pub fn cpu_share(before: &ProcSample, after: &ProcSample, wall: Duration) -> f64 {
    let secs = wall.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    (after.cpu_seconds - before.cpu_seconds).max(0.0) / secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(None).expect("/proc/self is readable");
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes);
        // Burn some CPU and see it counted.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let later = sample(None).unwrap();
        assert!(later.cpu_seconds > s.cpu_seconds);
    }
}
