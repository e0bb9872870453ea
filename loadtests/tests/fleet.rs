//! The multi-process path end to end, on a small scale: `odin-load run fleet`
//! with real NATS, two `odin-server` gateways sharing one port and two load
//! worker processes, judged as one run; and ([`remote`]) workers in
//! containers that join a run over NATS. Needs the built `odin-server` and
//! `odin-publisher` (`ODIN_BIN_DIR`, as `make test` sets it).

use std::path::Path;
use std::process::Command;

#[path = "fleet/remote.rs"]
mod remote;

/// What a passing run left: its output folder (kept while the run is
/// inspected), its `report.json`, stdout and stderr.
struct PassedRun {
    out: tempfile::TempDir,
    report: serde_json::Value,
    stdout: String,
    stderr: String,
}

/// Runs `odin-load run <args>` on the project's scenario file and asserts
/// that it exited 0.
fn run_passing(args: &[&str]) -> PassedRun {
    let out = tempfile::tempdir().unwrap();
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios.toml");
    let run = Command::new(env!("CARGO_BIN_EXE_odin-load"))
        .arg("run")
        .args(args)
        .arg("--no-progress")
        .arg("--scenario-file")
        .arg(&scenarios)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("odin-load runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(
        run.status.code(),
        Some(0),
        "odin-load failed:\n{stdout}\n{stderr}"
    );
    let report =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    PassedRun {
        out,
        report,
        stdout,
        stderr,
    }
}

#[test]
fn a_run_over_two_gateways_and_two_load_processes_gives_one_verdict() {
    let PassedRun {
        out,
        report,
        stdout,
        ..
    } = run_passing(&[
        "fleet",
        "--users",
        "200",
        "--ramp-rate",
        "200",
        "--hold",
        "3s",
        "--publish-rate",
        "20",
    ]);
    assert_eq!(report["processes"], 2, "{report:#}");
    assert_eq!(report["users"]["live"], 200);
    let accounting = &report["accounting"];
    assert!(accounting["expected"].as_u64().unwrap() > 0, "{accounting}");
    assert_eq!(accounting["delivered"], accounting["expected"]);
    assert_eq!(accounting["lost"], 0);
    let fleet = &report["fleet"];
    assert_eq!(fleet["gateways"], 2, "{fleet}");
    let per_gateway: Vec<u64> = fleet["connectionsPerGateway"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(per_gateway.iter().sum::<u64>(), 200, "{per_gateway:?}");
    assert!(
        per_gateway.iter().all(|&c| c > 0),
        "one gateway took every connection: {per_gateway:?}"
    );
    // The gateways' /stats are summed: each delivered its own clients' share.
    assert_eq!(
        report["server"]["statsAfter"]["connectionCount"], 200,
        "{}",
        report["server"]
    );
    for worker in 0..2 {
        let dir = out.path().join(format!("worker-{worker}"));
        assert!(
            dir.join("report.json").exists(),
            "worker {worker} left no report"
        );
    }
    assert!(stdout.contains("PASS"), "{stdout}");
}

/// Runs `scenario` (`failover` or a variant) small: 300 users, a node
/// stopped 8 s into a 10 s hold (2 s left after it); asserts that a node
/// was stopped and returns the run's report.
fn run_losing_a_node(scenario: &str) -> serde_json::Value {
    let PassedRun { report, stderr, .. } = run_passing(&[
        scenario,
        "--users",
        "300",
        "--ramp-rate",
        "300",
        "--hold",
        "10s",
        "--publish-rate",
        "20",
    ]);
    assert!(
        stderr.contains("stopping NATS node"),
        "no node was stopped:\n{stderr}"
    );
    report
}

#[test]
fn a_run_on_a_nats_cluster_survives_the_loss_of_a_node() {
    // The node lost is the last-prices stream's leader: the store misses
    // what is published during the election, and the publisher sends those
    // prices again (its rules include stale-final-prices<=0 and
    // stale-stored-prices<=0).
    let report = run_losing_a_node("failover");
    let target = report["target"].as_str().unwrap_or_default();
    assert!(
        target.contains("(the last-prices stream's leader) stopped"),
        "{target}"
    );
    assert_eq!(report["users"]["live"], 300, "{}", report["users"]);
    assert_eq!(report["users"]["reconnects"], 0, "{}", report["users"]);
    assert_eq!(report["fleet"]["gateways"], 3);
    // The gateway on that node reconnected: had it not, its third of the users
    // would have lost the last 2 s of 10 (about 7 % of all deliveries).
    let accounting = &report["accounting"];
    let expected = accounting["expected"].as_u64().unwrap();
    let lost = accounting["lost"].as_u64().unwrap();
    assert!(expected > 0, "{accounting}");
    assert!(
        lost * 50 < expected,
        "{lost} of {expected} lost: the gateway of the stopped node did not come back"
    );
}

#[test]
fn nothing_is_lost_when_the_node_leading_the_last_prices_stream_is_lost() {
    // `failover-lossless` is `failover` with the stream's leader stopped,
    // `--nats-second-url` on every gateway, the publisher confirming what
    // the store takes, and `loss<=0` and `stale-stored-prices<=0` among its
    // rules.
    let report = run_losing_a_node("failover-lossless");
    let target = report["target"].as_str().unwrap_or_default();
    assert!(
        target.contains("two NATS connections per gateway")
            && target.contains("(the last-prices stream's leader) stopped"),
        "{target}"
    );
    let accounting = &report["accounting"];
    assert!(accounting["expected"].as_u64().unwrap() > 0, "{accounting}");
    assert_eq!(accounting["lost"], 0, "{accounting}");
    assert_eq!(accounting["delivered"], accounting["expected"]);
    // Every token priced in the run was checked in the store, and the store
    // ends on its last price although its leader was lost mid-run.
    assert!(
        accounting["storedPrices"].as_u64().unwrap() > 0,
        "{accounting}"
    );
    assert_eq!(accounting["staleStoredPrices"], 0, "{accounting}");
}
