//! The page's JavaScript modules on their own: `node --test client/test/`
//! runs their unit tests (back-off, de-dup window, reconnect loop with a fake
//! WebSocket, snapshot handling, latency percentiles, formatting).

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

#[tokio::test]
async fn client_modules_pass_their_unit_tests() {
    let node = std::env::var_os("ODIN_NODE").unwrap_or_else(|| "node".into());
    let probe = tokio::process::Command::new(&node)
        .arg("--version")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .await;
    let version = match probe {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: browser test: client unit tests: no Node.js (apt-get install nodejs, or set ODIN_NODE)"
            );
            return;
        }
    };
    // `node --test` with mock timers needs Node 20.4 or later.
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: browser test: client unit tests: Node {version} is older than 20"
        );
        return;
    }
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client");
    let run = tokio::process::Command::new(&node)
        .args(["--test", "test/"])
        .current_dir(&client)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("node --test finishes within 60 s")
        .expect("node runs");
    assert!(
        out.status.success(),
        "node --test client/test/ failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
