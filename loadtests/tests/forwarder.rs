//! The bare forwarder (`odin-forwarder`) as the load tool runs it:
//! `odin-load run quick --server forwarder` with real NATS, the built
//! `odin-forwarder` and `odin-publisher` (found through `ODIN_BIN_DIR`, else
//! built by the harness), zero loss, and a stepped run with
//! `compare_forwarder` that prints the comparison of issue #8. The forwarder
//! itself, in-process, is tested in `forwarder/tests/protocol.rs`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The load runs share two cores: one at a time.
static LOAD_RUNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `odin-load` with `args` and returns its stdout, asserting exit 0.
fn odin_load(args: &[&str], out: &Path) -> String {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios.toml");
    odin_load_with(args, &scenarios, out)
}

fn odin_load_with(args: &[&str], scenarios: &Path, out: &Path) -> String {
    let run = Command::new(env!("CARGO_BIN_EXE_odin-load"))
        .args(args)
        .arg("--no-progress")
        .arg("--scenario-file")
        .arg(scenarios)
        .arg("--out")
        .arg(out)
        .output()
        .expect("odin-load runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(0),
        "odin-load failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_load_run_against_the_forwarder_loses_nothing() {
    let _one_at_a_time = LOAD_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let stdout = odin_load(
        &[
            "run",
            "quick",
            "--server",
            "forwarder",
            "--users",
            "200",
            "--ramp-rate",
            "200",
            "--hold",
            "3s",
        ],
        out.path(),
    );
    let report = read_json(&out.path().join("report.json"));
    assert_eq!(report["users"]["live"], 200, "{report:#}");
    let accounting = &report["accounting"];
    assert!(accounting["expected"].as_u64().unwrap() > 0, "{accounting}");
    assert_eq!(accounting["delivered"], accounting["expected"]);
    assert_eq!(accounting["lost"], 0);
    assert_eq!(accounting["duplicates"], 0);
    let server = &report["server"];
    assert_eq!(server["binary"], "odin-forwarder", "{server}");
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .contains("odin-forwarder")
    );
    assert!(
        server["cpuPerDeliveryUs"].as_f64().unwrap() > 0.0,
        "{server}"
    );
    assert!(server["processAfter"]["rssBytes"].as_u64().unwrap() > 0);
    assert!(
        server.get("statsAfter").is_none_or(Value::is_null),
        "{server}"
    );
    assert!(
        stdout.contains("odin-forwarder, the bare forwarder"),
        "{stdout}"
    );
    assert!(stdout.contains("µs per delivery"), "{stdout}");
    assert!(
        stdout.contains("server /stats") && stdout.contains("n/a"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS"), "{stdout}");
}

#[test]
fn a_stepped_run_compares_odin_with_the_forwarder() {
    let _one_at_a_time = LOAD_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios.toml");
    std::fs::write(
        &scenarios,
        r#"
[defaults]
tokens = 20
subscriptions = 5
publish_rate = 20
tick = "60s"
ramp_rate = 200
hold = "3s"
drain = "1s"
warmup = "1s"
thresholds = ["loss<=0"]

[scenario.small]
users = 100

[step.tiny]
scenario = "small"
rates = [20]
cooldown = "1s"
run_every_rate = true
compare_forwarder = true
compare_pairs = 2
thresholds = ["connect-success>=100%", "loss<=0", "duplicates<=0"]
"#,
    )
    .unwrap();
    let out = dir.path().join("run");
    let stdout = odin_load_with(&["run", "tiny"], &scenarios, &out);
    assert!(
        stdout.contains("server CPU per delivery at 20 events/s: odin-server "),
        "{stdout}"
    );
    assert!(stdout.contains(", bare forwarder "), "{stdout}");
    assert!(
        stdout.contains("(medians of 2 alternating runs each)"),
        "{stdout}"
    );
    let steps = read_json(&out.join("report.json"));
    assert_eq!(steps["name"], "tiny", "{steps:#}");
    assert_eq!(steps["steps"][0]["server"], "odin-server");
    let c = &steps["forwarderComparison"];
    assert_eq!(c["rate"], 20.0, "{c}");
    assert_eq!(c["forwarder"]["server"], "odin-forwarder");
    assert_eq!(c["forwarder"]["lost"], 0, "{c}");
    assert!(
        c["odin"]["serverCpuPerDeliveryUs"].as_f64().unwrap() > 0.0,
        "{c}"
    );
    assert!(
        c["forwarder"]["serverCpuPerDeliveryUs"].as_f64().unwrap() > 0.0,
        "{c}"
    );
    assert!(c["odinOverForwarderPercent"].is_number(), "{c}");
    assert_eq!(c["repeats"][0]["odin"]["server"], "odin-server", "{c}");
    assert_eq!(
        c["repeats"][0]["forwarder"]["server"], "odin-forwarder",
        "{c}"
    );
    assert!(c["odinMedianUs"].as_f64().unwrap() > 0.0, "{c}");
    // Each run keeps its own full report.
    let forwarder = read_json(&out.join("tiny-20-forwarder/report.json"));
    assert_eq!(forwarder["server"]["binary"], "odin-forwarder");
    assert!(out.join("tiny-20/report.json").exists());
    assert!(out.join("tiny-20-odin-2/report.json").exists());
    assert!(out.join("tiny-20-forwarder-2/report.json").exists());
    assert!(
        std::fs::read_to_string(out.join("steps.md"))
            .unwrap()
            .contains("bare forwarder")
    );
}
