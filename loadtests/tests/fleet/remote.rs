//! Load workers on other hosts: three `odin-load worker --nats` containers
//! join a run over NATS and load two `odin-server` containers, with NATS in
//! a container too, all on a private Docker network this test creates; the
//! coordinator (`odin-load run --remote-workers 3`) and the publisher run
//! on the host. Images of this build (`odin-server`, `odin-load`) are made
//! under a tag of their own by `scripts/build-images.sh`. Skipped, with the
//! reason, where no Docker engine answers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use odin_harness::nats::select;
use odin_harness::server::Endpoint;
use odin_server::auth::AuthConfig;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

const SECRET: &str = odin_harness::server::TEST_SECRET;
const WORKERS: usize = 3;
const USERS: usize = 90;

/// The folder holding this build's binaries.
fn bin_dir() -> PathBuf {
    std::env::var_os("ODIN_BIN_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_BIN_EXE_odin-load"))
                .parent()
                .expect("odin-load is in a folder")
                .to_path_buf()
        },
        PathBuf::from,
    )
}

/// The images' tag: one per build folder, so checkouts sharing a Docker
/// engine do not run each other's binaries.
fn image_tag(bins: &Path) -> String {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let path = bins.canonicalize().unwrap_or_else(|_| bins.to_path_buf());
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(path);
    format!("test-{:08x}", hash as u32)
}

/// Makes the images of this build (a second or so when they are current).
fn build_images(bins: &Path, tag: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images.sh");
    let out = std::process::Command::new(script)
        .args(["nats", "server", "load"])
        .env("ODIN_IMAGE_BIN_DIR", bins)
        .env("ODIN_IMAGE_TAG", tag)
        .env("ODIN_IMAGES_REQUIRED", "1")
        .output()
        .expect("build-images.sh runs");
    assert!(
        out.status.success(),
        "cannot build the images:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A container's stderr, for a failure's message.
async fn log_of(name: &str, container: &ContainerAsync<GenericImage>) -> String {
    let err = container.stderr_to_vec().await.unwrap_or_default();
    format!("--- {name}:\n{}", String::from_utf8_lossy(&err))
}

fn read_json(path: &Path) -> serde_json::Value {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("a JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_containers_joined_over_nats_give_one_verdict() {
    if let Err(reason) = select::docker_reachable() {
        odin_harness::report_skip(&format!(
            "remote load workers: Docker is not reachable ({reason})"
        ));
        return;
    }
    let bins = bin_dir();
    let tag = image_tag(&bins);
    build_images(&bins, &tag);
    // Unique names: other test runs share the Docker engine. The network is
    // created by testcontainers with the first container and removed with
    // the last; every container goes when its guard drops, also on a panic.
    let unique = format!(
        "odin-lw-{}-{}",
        std::process::id(),
        std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .unwrap()
            .subsec_nanos()
    );
    let network = format!("{unique}-net");
    let nats_name = format!("{unique}-nats");
    let nats = GenericImage::new("odin-nats", "local")
        .with_exposed_port(4222.tcp())
        .with_wait_for(WaitFor::message_on_stderr("Server is ready"))
        .with_network(&network)
        .with_container_name(&nats_name)
        .start()
        .await
        .expect("the NATS container starts");
    let nats_port = nats.get_host_port_ipv4(4222).await.unwrap();
    let nats_inside = format!("nats://{nats_name}:4222");

    let mut gateways = Vec::new();
    let mut gateway_urls = Vec::new();
    for g in 0..2 {
        let name = format!("{unique}-gw{g}");
        let gateway = GenericImage::new("odin-server", &tag)
            .with_exposed_port(3001.tcp())
            .with_wait_for(WaitFor::message_on_stderr("serving"))
            .with_network(&network)
            .with_container_name(&name)
            .with_env_var("ODIN_NATS_URL", &nats_inside)
            .with_env_var("ODIN_JWT_SECRET", SECRET)
            .start()
            .await
            .unwrap_or_else(|e| panic!("gateway {g} starts: {e}"));
        let http_port = gateway.get_host_port_ipv4(3001).await.unwrap();
        let endpoint = Endpoint {
            ws_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], http_port).into(),
            auth: AuthConfig::with_secret(SECRET),
            tls: None,
        };
        endpoint
            .wait_for_stats(odin_harness::wait::LIMIT, |s| s.nats_connected)
            .await
            .unwrap_or_else(|e| panic!("gateway {g} connects to NATS: {e:#}"));
        gateways.push(gateway);
        gateway_urls.push(format!("ws://{name}:8080/ws"));
    }

    let out = tempfile::tempdir().unwrap();
    let run_id = unique.replace("odin-lw-", "run-");
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios.toml");
    let users = USERS.to_string();
    let mut coordinator = tokio::process::Command::new(env!("CARGO_BIN_EXE_odin-load"));
    coordinator
        .args(["run", "fleet", "--no-progress", "--scenario-file"])
        .arg(&scenarios)
        .arg("--out")
        .arg(out.path())
        .args([
            "--remote-workers",
            "3",
            "--run-id",
            &run_id,
            "--join-timeout",
            "60s",
        ])
        .args(["--url", &gateway_urls[0], "--url", &gateway_urls[1]])
        .args(["--nats-url", &format!("nats://127.0.0.1:{nats_port}")])
        .args(["--jwt-secret", SECRET])
        .args(["--users", &users, "--ramp-rate", &users])
        .args(["--hold", "5s", "--publish-rate", "20"])
        .env("ODIN_BIN_DIR", &bins)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let coordinator = coordinator.spawn().expect("the coordinator starts");

    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let worker = GenericImage::new("odin-load", &tag)
            .with_network(&network)
            .with_container_name(format!("{unique}-w{w}"))
            .with_cmd(["worker", "--nats", &nats_inside, "--run", &run_id])
            .start()
            .await
            .unwrap_or_else(|e| panic!("worker {w} starts: {e}"));
        workers.push(worker);
    }

    let run = tokio::time::timeout(Duration::from_secs(180), coordinator.wait_with_output())
        .await
        .expect("the coordinator finishes within 3 minutes")
        .expect("the coordinator runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    if run.status.code() != Some(0) {
        let mut logs = String::new();
        for (w, worker) in workers.iter().enumerate() {
            logs += &log_of(&format!("worker {w}"), worker).await;
        }
        for (g, gateway) in gateways.iter().enumerate() {
            logs += &log_of(&format!("gateway {g}"), gateway).await;
        }
        panic!(
            "the coordinator failed ({}):\n{stdout}\n{stderr}\n{logs}",
            run.status
        );
    }
    assert!(stdout.contains("PASS"), "{stdout}");
    assert_eq!(stderr.matches(" joined from ").count(), WORKERS, "{stderr}");

    let report = read_json(&out.path().join("report.json"));
    assert_eq!(report["outcome"]["status"], "pass", "{}", report["outcome"]);
    assert_eq!(report["processes"], WORKERS, "{report:#}");
    assert!(
        report["target"]
            .as_str()
            .unwrap_or_default()
            .contains("3 load workers joined over NATS"),
        "{}",
        report["target"]
    );
    // Every worker's users are counted, each share once.
    assert_eq!(report["users"]["live"], USERS, "{}", report["users"]);
    let mut first_users = Vec::new();
    for w in 0..WORKERS {
        let part = read_json(&out.path().join(format!("worker-{w}/report.json")));
        assert_eq!(
            part["users"]["live"],
            USERS / WORKERS,
            "worker {w}: {}",
            part["users"]
        );
        first_users.push(part["scenario"]["first_user"].as_u64().unwrap());
    }
    first_users.sort_unstable();
    assert_eq!(first_users, [0, 30, 60]);
    // Nothing lost, nothing twice, against what the host's publisher sent.
    let accounting = &report["accounting"];
    assert!(accounting["expected"].as_u64().unwrap() > 0, "{accounting}");
    assert_eq!(
        accounting["delivered"], accounting["expected"],
        "{accounting}"
    );
    assert_eq!(accounting["lost"], 0, "{accounting}");
    assert_eq!(accounting["duplicates"], 0, "{accounting}");
}
