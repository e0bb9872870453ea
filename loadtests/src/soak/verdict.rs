//! The soak's samples and its verdict: is the server's memory flat after the
//! warm-up, and are its file descriptors given back? Pure functions over the
//! samples, so the arithmetic is tested without a stack.

use serde::{Deserialize, Serialize};

const MIB: f64 = 1024.0 * 1024.0;

/// One reading of the server, every sampling interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Seconds since the churn started (negative: before it).
    pub t_seconds: f64,
    /// The server's resident memory (`VmRSS`), in bytes.
    pub rss_bytes: u64,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: u64,
    /// `/stats` `connectionCount`.
    pub connections: u64,
    /// `/stats` `tokensHeld`.
    pub tokens_held: u64,
    /// `/stats` `tokensEvicted`.
    pub tokens_evicted: u64,
    /// `/stats` `messagesDelivered`.
    pub messages_delivered: u64,
    /// WebSocket handshakes the churners completed so far.
    pub connects: u64,
    /// Handshakes per second since the previous sample.
    pub connects_per_second: f64,
    /// Channels subscribed and unsubscribed so far.
    pub subscription_changes: u64,
    /// Price events published so far.
    pub published: u64,
}

/// What "flat" means; `LOAD_TESTING.md` ("Soak") explains the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    /// The start of the run left out of the memory checks.
    pub warmup_seconds: f64,
    /// The width of the two windows whose mean RSS is compared.
    pub window_seconds: f64,
    /// RSS growth always allowed between the windows, in MiB.
    pub rss_growth_mib: f64,
    /// RSS growth allowed as a share of the first window's mean, in percent
    /// (the larger of the two allowances applies).
    pub rss_growth_percent: f64,
    /// The largest least-squares slope of RSS after the warm-up, in MiB an
    /// hour.
    pub rss_slope_mib_per_hour: f64,
    /// Post-warm-up span under which the slope is reported but not judged
    /// (a short run's slope is mostly noise).
    pub slope_min_span_seconds: f64,
    /// Descriptors above the start-up count allowed once the churn stopped
    /// and the server settled.
    pub fd_end_margin: u64,
    /// Descriptors allowed above start-up plus the concurrency at any time.
    pub fd_peak_margin: u64,
}

impl Thresholds {
    /// The defaults for a run of `duration_seconds`: a warm-up of a fifth of
    /// the run (at most 2 minutes), windows of a fifth (at most 1 minute).
    pub fn for_duration(duration_seconds: f64) -> Thresholds {
        Thresholds {
            warmup_seconds: (duration_seconds / 5.0).min(120.0),
            window_seconds: (duration_seconds / 5.0).min(60.0),
            rss_growth_mib: 8.0,
            rss_growth_percent: 15.0,
            rss_slope_mib_per_hour: 60.0,
            slope_min_span_seconds: 300.0,
            fd_end_margin: 8,
            fd_peak_margin: 64,
        }
    }
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// `None`: reported, not judged.
    pub passed: Option<bool>,
    /// The figures.
    pub detail: String,
}

/// The memory figures the verdict is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryFigures {
    /// Mean RSS of the window right after the warm-up, in bytes.
    pub rss_after_warmup: f64,
    /// Mean RSS of the last window, in bytes.
    pub rss_end: f64,
    /// Least-squares slope of RSS after the warm-up, MiB an hour.
    pub slope_mib_per_hour: f64,
    /// Handshakes between the two windows' middles.
    pub connects_between: f64,
    /// The growth allowed, in bytes.
    pub allowed_growth: f64,
}

/// Mean of `values` (0 for none).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Least-squares slope of `points` (x, y); 0 for fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// The memory figures of the churn samples (`t_seconds` in `[0, end]`).
pub fn memory(samples: &[Sample], end_seconds: f64, th: &Thresholds) -> MemoryFigures {
    let first = (th.warmup_seconds, th.warmup_seconds + th.window_seconds);
    let last = (end_seconds - th.window_seconds, end_seconds + 0.5);
    let rss_in = |(from, to): (f64, f64)| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.t_seconds >= from && s.t_seconds <= to)
            .map(|s| s.rss_bytes as f64)
            .collect()
    };
    let connects_at = |t: f64| -> f64 {
        // The samples' cumulative handshakes, read at the sample nearest `t`.
        samples
            .iter()
            .min_by(|a, b| (a.t_seconds - t).abs().total_cmp(&(b.t_seconds - t).abs()))
            .map_or(0.0, |s| s.connects as f64)
    };
    let rss_after_warmup = mean(&rss_in(first));
    let rss_end = mean(&rss_in(last));
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_seconds >= th.warmup_seconds && s.t_seconds <= end_seconds + 0.5)
        .map(|s| (s.t_seconds / 3600.0, s.rss_bytes as f64 / MIB))
        .collect();
    MemoryFigures {
        rss_after_warmup,
        rss_end,
        slope_mib_per_hour: slope(&points),
        connects_between: connects_at((last.0 + end_seconds) / 2.0)
            - connects_at((first.0 + first.1) / 2.0),
        allowed_growth: (th.rss_growth_mib * MIB)
            .max(rss_after_warmup * th.rss_growth_percent / 100.0),
    }
}

/// The descriptor figures: at start-up (before the churn), the highest
/// during it, and after it stopped and the server settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FdFigures {
    /// Before the first client.
    pub start: u64,
    /// The highest sample.
    pub peak: u64,
    /// After the churn stopped and the server settled.
    pub end: u64,
}

/// The verdict's lines.
pub fn judge(
    mem: &MemoryFigures,
    fds: &FdFigures,
    concurrency: u64,
    post_warmup_span_seconds: f64,
    tokens_evicted: u64,
    th: &Thresholds,
) -> Vec<Check> {
    let growth = mem.rss_end - mem.rss_after_warmup;
    let per_connect = |bytes: f64| {
        if mem.connects_between > 0.0 {
            format!("{:.0} B", bytes / mem.connects_between)
        } else {
            "n/a".to_owned()
        }
    };
    let mut checks = vec![Check {
        name: "RSS growth after warm-up".into(),
        passed: Some(growth <= mem.allowed_growth),
        detail: format!(
            "{:.1} MiB → {:.1} MiB ({:+.1} MiB, {:+.1}%; allowed {:.1} MiB); over {:.0} handshakes \
             that is {} per connection, and the allowance is crossed by a leak of {} per connection",
            mem.rss_after_warmup / MIB,
            mem.rss_end / MIB,
            growth / MIB,
            if mem.rss_after_warmup > 0.0 {
                growth / mem.rss_after_warmup * 100.0
            } else {
                0.0
            },
            mem.allowed_growth / MIB,
            mem.connects_between,
            per_connect(growth),
            per_connect(mem.allowed_growth),
        ),
    }];
    let judged = post_warmup_span_seconds >= th.slope_min_span_seconds;
    checks.push(Check {
        name: "RSS slope after warm-up".into(),
        passed: judged.then_some(mem.slope_mib_per_hour <= th.rss_slope_mib_per_hour),
        detail: format!(
            "{:+.1} MiB/h (at most {:.0} MiB/h{})",
            mem.slope_mib_per_hour,
            th.rss_slope_mib_per_hour,
            if judged {
                String::new()
            } else {
                format!(
                    "; not judged: {:.0} s after the warm-up, under {:.0} s",
                    post_warmup_span_seconds, th.slope_min_span_seconds
                )
            }
        ),
    });
    let peak_limit = fds.start + concurrency + th.fd_peak_margin;
    checks.push(Check {
        name: "descriptors at peak".into(),
        passed: Some(fds.peak <= peak_limit),
        detail: format!(
            "{} (start-up {} + {} clients + {} = at most {})",
            fds.peak, fds.start, concurrency, th.fd_peak_margin, peak_limit
        ),
    });
    let end_limit = fds.start + th.fd_end_margin;
    checks.push(Check {
        name: "descriptors after the churn".into(),
        passed: Some(fds.end <= end_limit),
        detail: format!(
            "{} (start-up {}; at most {})",
            fds.end, fds.start, end_limit
        ),
    });
    checks.push(Check {
        name: "token churn".into(),
        passed: Some(tokens_evicted > 0),
        detail: format!("{tokens_evicted} tokens evicted (the table must have turned over)"),
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(leak_per_connect: f64) -> (MemoryFigures, Vec<Check>) {
        // 10 minutes, a sample every 5 s, 80 handshakes a second, 40 MiB
        // flat with ±1 MiB of noise.
        let th = Thresholds::for_duration(600.0);
        let samples: Vec<Sample> = (0..=120)
            .map(|i| {
                let t = i as f64 * 5.0;
                let connects = (t * 80.0) as u64;
                let noise = if i % 2 == 0 { MIB } else { -MIB };
                Sample {
                    t_seconds: t,
                    rss_bytes: (40.0 * MIB + noise + connects as f64 * leak_per_connect) as u64,
                    connects,
                    ..Sample::default()
                }
            })
            .collect();
        let mem = memory(&samples, 600.0, &th);
        let fds = FdFigures {
            start: 20,
            peak: 300,
            end: 21,
        };
        let checks = judge(&mem, &fds, 300, 480.0, 10, &th);
        (mem, checks)
    }

    #[test]
    fn flat_memory_passes() {
        let (mem, checks) = run(0.0);
        assert!(mem.slope_mib_per_hour.abs() < 5.0, "{mem:?}");
        assert!(checks.iter().all(|c| c.passed != Some(false)), "{checks:?}");
    }

    #[test]
    fn a_kib_per_connection_fails() {
        let (mem, checks) = run(1024.0);
        // 80 handshakes/s × 1 KiB × 420 s between the windows' middles.
        let growth = (mem.rss_end - mem.rss_after_warmup) / MIB;
        assert!((growth - 32.8).abs() < 1.0, "{growth}");
        assert_eq!(checks[0].passed, Some(false));
        assert_eq!(checks[1].passed, Some(false));
    }

    #[test]
    fn descriptors_not_given_back_fail() {
        let th = Thresholds::for_duration(600.0);
        let fds = FdFigures {
            start: 20,
            peak: 900,
            end: 400,
        };
        let checks = judge(&MemoryFigures::default(), &fds, 300, 480.0, 1, &th);
        assert_eq!(checks[2].passed, Some(false));
        assert_eq!(checks[3].passed, Some(false));
    }

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((slope(&pts) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
    }
}
