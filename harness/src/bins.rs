//! Finds the workspace's built binaries (`odin-server`, `odin-publisher`) so
//! fault tests and load runs can start them as real child processes.
//!
//! Cargo builds a crate's binaries only for that crate's own tests, so the
//! harness looks next to the running executable (`target/<profile>/`) and,
//! when a binary is missing, builds it once with the same cargo and profile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, bail};

/// Serialises builds: two tests asking for the same binary build it once.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The path of workspace binary `name`, building it first when it is absent.
///
/// `ODIN_BIN_DIR` overrides where binaries are looked for (e.g. a release
/// build for load runs).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = bin_dir()?;
    let path = dir.join(name);
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        build(name, &dir)?;
    }
    if !path.exists() {
        bail!("{} is still missing after building it", path.display());
    }
    Ok(path)
}

/// Where binaries of the current profile live.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ODIN_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let mut dir = exe.parent().context("executable has no folder")?;
    // Test binaries live in target/<profile>/deps, other binaries one up.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().context("deps folder has no parent")?;
    }
    Ok(dir.to_path_buf())
}

fn build(name: &str, dir: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--bin", name]);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // target/<profile> → target, so the build lands where we look.
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run cargo to build {name}"))?;
    if !status.success() {
        bail!("building {name} failed ({status})");
    }
    Ok(())
}
