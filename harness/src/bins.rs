//! Finds the workspace's binaries (`odin-server`, `odin-publisher`, and the
//! bare forwarder `odin-forwarder`) so fault tests and load runs can start
//! them as real child processes.
//!
//! - With `ODIN_BIN_DIR` set (what `make test` and the load targets do after
//!   building every binary), binaries are taken from there as they are.
//! - Otherwise the harness builds the binary itself, once per process, with
//!   the same cargo and profile into its own target directory
//!   (`target/harness-bins`). Cargo keeps the outer `cargo test`'s target
//!   directory locked while tests run, so building there would deadlock; and
//!   building every time (a no-op when up to date) means a bare `cargo test`
//!   never runs a stale binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, bail};

/// Binaries already built by this process, by name.
static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// The path of workspace binary `name` (which is also its package's name).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    binary_in(name, name)
}

/// The path of workspace binary `name` of package `package`, for a binary
/// that is not its package's namesake (`odin-load` of `odin-loadtests`).
pub fn binary_in(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ODIN_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        if !path.exists() {
            bail!("ODIN_BIN_DIR is set but {} does not exist", path.display());
        }
        return Ok(path);
    }
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(name) {
        return Ok(path.clone());
    }
    let path = build(package, name)?;
    built.insert(name.to_owned(), path.clone());
    Ok(path)
}

/// Builds binary `name` of `package` into `<workspace target>/harness-bins`
/// and returns its path.
fn build(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    let (target, release) = target_dir_and_profile()?;
    let target = target.join("harness-bins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--package", package, "--bin", name])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run cargo to build {name}"))?;
    if !status.success() {
        bail!("building {name} failed ({status})");
    }
    let path = target
        .join(if release { "release" } else { "debug" })
        .join(name);
    if !path.exists() {
        bail!("{} is missing after building it", path.display());
    }
    Ok(path)
}

/// The workspace's target directory and whether the running executable is a
/// release build, read off the executable's own path
/// (`target/<profile>/deps/<test>` or `target/<profile>/<bin>`).
fn target_dir_and_profile() -> anyhow::Result<(PathBuf, bool)> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let mut dir: &Path = exe.parent().context("executable has no folder")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().context("deps folder has no parent")?;
    }
    let release = dir.file_name().is_some_and(|n| n == "release");
    let target = dir.parent().context("profile folder has no parent")?;
    Ok((target.to_path_buf(), release))
}
