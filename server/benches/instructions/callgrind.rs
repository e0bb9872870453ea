//! The outer mode: each workload at two sizes under
//! `valgrind --tool=callgrind`, the difference per unit of work, and the
//! check against (or update of) the committed baseline.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::workloads::MAX_EVENTS;

/// Where the committed figures are.
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/instructions.json");

/// One figure: a workload run at two sizes, and the units of work (deliveries
/// or handshakes) each does.
struct Figure {
    name: &'static str,
    unit: &'static str,
    small: (Vec<String>, u64),
    large: (Vec<String>, u64),
}

fn figures() -> Vec<Figure> {
    let deliveries = |burst: usize, events: usize| {
        let args =
            format!("--measure deliveries --events {events} --subscribers 100 --burst {burst}");
        (
            args.split(' ').map(String::from).collect(),
            (events * 100) as u64,
        )
    };
    let handshakes = |count: usize| {
        let args = format!("--measure handshakes --count {count}");
        (args.split(' ').map(String::from).collect(), count as u64)
    };
    vec![
        Figure {
            name: "deliveries, 1 event per wake-up",
            unit: "delivery",
            small: deliveries(1, MAX_EVENTS / 2),
            large: deliveries(1, MAX_EVENTS),
        },
        Figure {
            name: "deliveries, bursts of 16 events",
            unit: "delivery",
            small: deliveries(16, MAX_EVENTS / 2),
            large: deliveries(16, MAX_EVENTS),
        },
        Figure {
            name: "handshakes",
            unit: "handshake",
            small: handshakes(50),
            large: handshakes(100),
        },
    ]
}

/// The committed figures.
#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    /// Why the file is there and how to rewrite it.
    note: String,
    /// A figure above baseline × (1 + tolerance) fails the check.
    tolerance: f64,
    /// Instructions per unit of work, by figure name.
    instructions: BTreeMap<String, f64>,
}

pub(crate) fn outer(update: bool) -> anyhow::Result<bool> {
    let exe = std::env::current_exe().context("cannot find this benchmark's executable")?;
    let status = Command::new("valgrind").arg("--version").output();
    if !status.is_ok_and(|s| s.status.success()) {
        bail!(
            "valgrind is not installed: run scripts/ensure-valgrind.sh (make bench-instructions does)"
        );
    }
    let dir = std::env::temp_dir().join(format!("odin-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let figures = figures();
    // Every run at once: the machine's cores share them, the counts do not
    // depend on it.
    let mut runs = Vec::new();
    for (i, figure) in figures.iter().enumerate() {
        for (size, (args, _)) in [("small", &figure.small), ("large", &figure.large)] {
            let out = dir.join(format!("{i}-{size}.callgrind"));
            let child = Command::new("valgrind")
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&exe)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("cannot start valgrind")?;
            runs.push((child, out));
        }
    }
    let mut totals = Vec::new();
    for (child, out) in runs {
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "a measured run failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        totals.push(total_instructions(&out)?);
    }
    let _ = std::fs::remove_dir_all(&dir);

    let measured: Vec<(&Figure, f64)> = figures
        .iter()
        .zip(totals.chunks(2))
        .map(|(figure, pair)| {
            let work = figure.large.1 - figure.small.1;
            (figure, (pair[1] as f64 - pair[0] as f64) / work as f64)
        })
        .collect();

    let path = Path::new(BASELINE);
    let baseline = read_baseline(path)?;
    if update {
        let tolerance = baseline.as_ref().map_or(0.02, |b| b.tolerance);
        let instructions = measured
            .iter()
            .map(|(f, n)| (f.name.to_owned(), (n * 10.0).round() / 10.0))
            .collect();
        write_baseline(path, tolerance, instructions)?;
        for (figure, n) in &measured {
            println!(
                "{:<34} {n:>12.1} instructions per {}",
                figure.name, figure.unit
            );
        }
        println!("wrote {}", path.display());
        return Ok(true);
    }
    let Some(baseline) = baseline else {
        bail!(
            "no baseline at {}: write one with `make bench-instructions-update`",
            path.display()
        );
    };
    let tolerance = baseline.tolerance;
    println!(
        "{:<34} {:>10} {:>14} {:>12} {:>8}",
        "workload", "per", "instructions", "baseline", "ratio"
    );
    let mut failures = Vec::new();
    for (figure, n) in &measured {
        let Some(&base) = baseline.instructions.get(figure.name) else {
            println!(
                "{:<34} {:>10} {n:>14.1} {:>12} {:>8}",
                figure.name, figure.unit, "-", "-"
            );
            failures.push(format!("{}: no baseline figure", figure.name));
            continue;
        };
        let ratio = n / base;
        println!(
            "{:<34} {:>10} {n:>14.1} {base:>12.1} {ratio:>8.4}",
            figure.name, figure.unit
        );
        if ratio > 1.0 + tolerance {
            failures.push(format!(
                "{}: {n:.1} instructions per {} is {:+.1} % over the baseline's {base:.1} (tolerance {:.1} %)",
                figure.name,
                figure.unit,
                (ratio - 1.0) * 100.0,
                tolerance * 100.0
            ));
        } else if ratio < 1.0 - tolerance {
            println!(
                "  {:.1} % below the baseline: if that is intended, rewrite it with `make bench-instructions-update`",
                (1.0 - ratio) * 100.0
            );
        }
    }
    if failures.is_empty() {
        println!(
            "every figure within {:.1} % of the baseline",
            tolerance * 100.0
        );
        return Ok(true);
    }
    eprintln!("instruction counts regressed:");
    for failure in &failures {
        eprintln!("  {failure}");
    }
    eprintln!(
        "If the change is intended, rewrite {} with `make bench-instructions-update` and commit it.",
        path.display()
    );
    Ok(false)
}

/// The total instructions (`Ir`) of a callgrind output file: its `totals:`
/// line, else its `summary:` line.
fn total_instructions(path: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read callgrind's output {}", path.display()))?;
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    line("totals:")
        .or_else(|| line("summary:"))
        .with_context(|| format!("no totals in {}", path.display()))
}

fn read_baseline(path: &Path) -> anyhow::Result<Option<Baseline>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a valid baseline", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_baseline(
    path: &Path,
    tolerance: f64,
    instructions: BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let baseline = Baseline {
        note: "Instructions per unit of work of server/benches/instructions.rs under callgrind. \
               Rewrite with `make bench-instructions-update` after an intended change \
               or a toolchain or dependency update."
            .into(),
        tolerance,
        instructions,
    };
    let text = serde_json::to_string_pretty(&baseline)? + "\n";
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
