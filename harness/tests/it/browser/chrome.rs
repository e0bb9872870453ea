//! Headless Chromium driven over WebDriver, as a test guard.
//!
//! [`Browser::launch`] starts `chromedriver` on a free loopback port in its
//! own process group, opens a session whose Chromium runs headless with a
//! fresh profile, and collects the browser console through chromedriver's
//! log endpoint. [`Browser::close`] ends the session (Chromium exits) and
//! the driver; `Drop` kills the whole process group, so a failed test leaves
//! no browser behind.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Every single WebDriver command is bounded by this.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the browser and its driver are.
pub(crate) struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Tools {
    /// `ODIN_CHROMIUM` / `ODIN_CHROMEDRIVER`, else Debian's `/usr/bin/chromium`
    /// and `/usr/bin/chromedriver`, else `chromium` / `chromedriver` on
    /// `PATH`; `Err` says what is missing.
    pub(crate) fn find() -> Result<Tools, String> {
        let chromium = locate(
            "ODIN_CHROMIUM",
            "/usr/bin/chromium",
            &["chromium", "chromium-browser"],
        )
        .ok_or("no Chromium (apt-get install chromium, or set ODIN_CHROMIUM)")?;
        let chromedriver = locate(
            "ODIN_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            &["chromedriver"],
        )
        .ok_or("no chromedriver (apt-get install chromium-driver, or set ODIN_CHROMEDRIVER)")?;
        Ok(Tools {
            chromium,
            chromedriver,
        })
    }

    /// The tools, or `None` after printing `SKIPPED: browser test: <why>`
    /// straight to stderr (not through the test's captured output, so a
    /// skip is seen in every run).
    pub(crate) fn find_or_skip(test: &str) -> Option<Tools> {
        match Tools::find() {
            Ok(tools) => Some(tools),
            Err(reason) => {
                let _ = writeln!(std::io::stderr(), "SKIPPED: browser test: {test}: {reason}");
                None
            }
        }
    }
}

fn locate(env: &str, default: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    if Path::new(default).is_file() {
        return Some(default.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A headless Chromium session; see the module documentation.
pub(crate) struct Browser {
    client: Option<fantoccini::Client>,
    driver: Child,
    /// The driver's process group, which Chromium's processes join.
    group: Option<u32>,
    /// Console entries drained from the driver so far.
    console: Vec<ConsoleEntry>,
    _profile: tempfile::TempDir,
}

/// One browser console entry (`console.error`, an uncaught exception, a
/// failed network request …).
#[derive(Debug, Clone)]
pub(crate) struct ConsoleEntry {
    /// `SEVERE`, `WARNING`, `INFO` or `DEBUG`.
    pub(crate) level: String,
    /// `javascript`, `console-api`, `network` …
    pub(crate) source: String,
    pub(crate) message: String,
}

impl std::fmt::Display for ConsoleEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}] {}", self.level, self.source, self.message)
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `extra_args` are
    /// added to Chromium's command line.
    pub(crate) async fn launch(tools: &Tools, extra_args: &[&str]) -> anyhow::Result<Browser> {
        let profile = tempfile::Builder::new()
            .prefix("odin-chromium-")
            .tempdir()
            .context("cannot create a Chromium profile folder")?;
        let port = free_port()?;
        let mut driver = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so Drop can take Chromium down with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", tools.chromedriver.display()))?;
        let group = driver.id();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if let Err(e) = wait_ready(addr, &mut driver).await {
            kill_group(group);
            return Err(e);
        }

        let mut args = vec![
            // The flags the machine needs: headless, no sandbox (containers),
            // and nothing that phones home (closed network: such connections
            // are refused, and Chromium logs errors about them).
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": tools.chromium,
                "args": args,
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        let mut builder = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        );
        builder.capabilities(caps);
        let driver_url = format!("http://{addr}");
        let connect = builder.connect(&driver_url);
        let client = match tokio::time::timeout(Duration::from_secs(60), connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                kill_group(group);
                bail!("chromedriver could not start Chromium: {e}");
            }
            Err(_) => {
                kill_group(group);
                bail!("chromedriver did not start Chromium within 60 s");
            }
        };
        Ok(Browser {
            client: Some(client),
            driver,
            group,
            console: Vec::new(),
            _profile: profile,
        })
    }

    fn client(&self) -> &fantoccini::Client {
        self.client
            .as_ref()
            .expect("the session is open until close")
    }

    /// Opens `url` and waits for its load event.
    pub(crate) async fn goto(&self, url: &str) -> anyhow::Result<()> {
        bounded("navigate", self.client().goto(url)).await
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    pub(crate) async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        bounded("execute script", self.client().execute(script, Vec::new())).await
    }

    /// Polls `script` every 20 ms until it returns something other than
    /// `null`/`false`, and returns that; fails after `limit` with `what`.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        script: &str,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(script).await?;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!("the page did not show {what} within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A PNG of the viewport.
    pub(crate) async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        bounded("screenshot", self.client().screenshot()).await
    }

    /// Console entries since the last call (chromedriver hands each out once).
    pub(crate) async fn new_console_entries(&mut self) -> anyhow::Result<Vec<ConsoleEntry>> {
        let value = bounded("read the browser log", self.client().issue_cmd(BrowserLog)).await?;
        let entries: Vec<ConsoleEntry> = value
            .as_array()
            .context("the browser log is not an array")?
            .iter()
            .map(|e| ConsoleEntry {
                level: e["level"].as_str().unwrap_or_default().to_owned(),
                source: e["source"].as_str().unwrap_or_default().to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        self.console.extend(entries.iter().cloned());
        Ok(entries)
    }

    /// Every console entry collected so far.
    pub(crate) fn console(&self) -> &[ConsoleEntry] {
        &self.console
    }

    /// Ends the session (Chromium exits) and stops the driver.
    pub(crate) async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(COMMAND_TIMEOUT, client.close()).await;
        }
        let _ = self.driver.start_kill();
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, self.driver.wait()).await;
        // Whatever of Chromium is still around goes with the group.
        if let Some(group) = self.group.take() {
            kill_group(Some(group));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(self.group.take());
    }
}

/// `kill -KILL -<group>`: the driver and every Chromium process it started
/// (they stay in the driver's process group).
fn kill_group(group: Option<u32>) {
    if let Some(group) = group {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status();
    }
}

/// Any await on the browser, bounded by [`COMMAND_TIMEOUT`].
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => bail!("WebDriver {what} failed: {e}"),
        Err(_) => bail!("WebDriver {what} took longer than {COMMAND_TIMEOUT:?}"),
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls until chromedriver accepts connections (it listens once it is
/// ready for sessions; its HTTP keeps connections alive, so a TCP connect is
/// the simplest probe).
async fn wait_ready(addr: SocketAddr, driver: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = driver.try_wait()? {
            bail!("chromedriver exited at start ({status})");
        }
        let probe =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await;
        if let Ok(Ok(_)) = probe {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("chromedriver on {addr} not listening within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// chromedriver's `POST /session/{id}/se/log {"type":"browser"}`: the console
/// entries since the last call (kept because of `goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}
