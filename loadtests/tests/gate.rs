//! `odin-load gate` end to end on a small scale: real NATS, real
//! `odin-server` and `odin-publisher` processes, alternating pairs of runs.
//! The same binaries on both sides must pass; a candidate whose server turns
//! users away (a wrapper that starts the real server with its
//! `--max-connections` set to 30, under the run's 40 users) must be caught
//! with exit 1, naming the check. The cost regressions are the
//! selftest's (`make gate-selftest`): they need release builds and minutes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A gate file with one gate, `test`, on the quick scenario: correctness
/// counts at zero and tolerances so wide that small, noisy debug runs
/// cannot trip them (the statistics have unit tests of their own).
const GATE_FILE: &str = r#"
[gate.test]
description = "small end-to-end test of the gate"
scenario = "quick"
pairs = 3
max_pairs = 3
[gate.test.checks]
cpu-per-delivery = { worse_by = "1000%" }
latency-p50 = { worse_by = "1000%" }
rss-growth = { worse_by = "1MiB" }
failed-users = { at_most = 0 }
loss = { at_most = 0 }
duplicates = { at_most = 0 }
"#;

/// The folder of the built `odin-server` and `odin-publisher`.
fn bins() -> PathBuf {
    match std::env::var_os("ODIN_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let server = odin_harness::bins::binary("odin-server").unwrap();
            let publisher = odin_harness::bins::binary("odin-publisher").unwrap();
            assert_eq!(server.parent(), publisher.parent());
            server.parent().unwrap().to_path_buf()
        }
    }
}

struct Gate {
    code: Option<i32>,
    report: serde_json::Value,
    output: String,
}

fn gate(baseline: &Path, candidate: &Path, dir: &Path) -> Gate {
    std::fs::create_dir_all(dir).unwrap();
    let gate_file = dir.join("gate.toml");
    std::fs::write(&gate_file, GATE_FILE).unwrap();
    let out = dir.join("out");
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios.toml");
    let run = Command::new(env!("CARGO_BIN_EXE_odin-load"))
        .arg("gate")
        .arg("test")
        .arg("--gate-file")
        .arg(&gate_file)
        .arg("--scenario-file")
        .arg(&scenarios)
        .arg("--baseline-bins")
        .arg(baseline)
        .arg("--candidate-bins")
        .arg(candidate)
        .arg("--out")
        .arg(&out)
        .args([
            "--",
            "--users",
            "40",
            "--hold",
            "3s",
            "--warmup",
            "1s",
            "--connect-timeout",
            "3s",
        ])
        .output()
        .expect("odin-load runs");
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let report = std::fs::read(out.join("gate.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_else(|e| panic!("no gate.json ({e}):\n{output}"));
    for file in ["gate.md", "gate.html", "junit.xml"] {
        assert!(out.join(file).is_file(), "{file} missing:\n{output}");
    }
    Gate {
        code: run.status.code(),
        report,
        output,
    }
}

fn judgement<'a>(report: &'a serde_json::Value, metric: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == metric)
        .unwrap_or_else(|| panic!("no check {metric}"))["judgement"]
        .as_str()
        .unwrap()
}

#[test]
fn the_same_binaries_pass_and_a_server_that_turns_users_away_is_caught() {
    let bins = bins();
    let dir = tempfile::tempdir().unwrap();

    let same = gate(&bins, &bins, &dir.path().join("same"));
    assert_eq!(same.code, Some(0), "{}", same.output);
    assert_eq!(same.report["verdict"]["status"], "pass", "{}", same.output);
    assert_eq!(same.report["pairs"], 3);
    assert_eq!(same.report["runs"].as_array().unwrap().len(), 6);
    // A B, then B A.
    let sides: Vec<&str> = same.report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["side"].as_str().unwrap())
        .collect();
    assert_eq!(
        &sides[..4],
        ["baseline", "candidate", "candidate", "baseline"]
    );

    // The candidate: the same server, started with room for 30 of the 40
    // users.
    let candidate = dir.path().join("candidate-bins");
    std::fs::create_dir_all(&candidate).unwrap();
    let wrapper = candidate.join("odin-server");
    // The harness asks for room for every user; the wrapper gives 30.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nskip=0\nfor a in \"$@\"; do\n  shift\n  \
             if [ $skip = 1 ]; then set -- \"$@\" 30; skip=0; continue; fi\n  \
             [ \"$a\" = --max-connections ] && skip=1\n  set -- \"$@\" \"$a\"\ndone\n\
             exec '{}' \"$@\"\n",
            bins.join("odin-server").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        bins.join("odin-publisher"),
        candidate.join("odin-publisher"),
    )
    .unwrap();

    let worse = gate(&bins, &candidate, &dir.path().join("worse"));
    assert_eq!(worse.code, Some(1), "{}", worse.output);
    assert_eq!(
        worse.report["verdict"]["status"], "regression",
        "{}",
        worse.output
    );
    assert_eq!(judgement(&worse.report, "failed-users"), "regression");
    assert_eq!(judgement(&worse.report, "duplicates"), "pass");
    assert!(
        worse.output.contains("REGRESSION in 3 pairs: failed-users"),
        "{}",
        worse.output
    );
}
