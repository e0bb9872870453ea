//! Turning a [`crate::report::RunReport`] into what people read: a terminal
//! summary, Markdown for a pull request, an HTML page with plots, and the
//! files of the run folder.

pub mod html;
pub mod junit;
pub mod markdown;
pub mod rows;
pub mod series;
pub mod steps;
pub mod terminal;

use std::path::Path;

use anyhow::Context;

use crate::report::RunReport;

/// Writes `report.json`, `report.md`, `report.html`, `junit.xml` and the server's
/// `/stats` before and after into `dir`.
pub fn write_run_folder(report: &RunReport, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("report.json", serde_json::to_string_pretty(report)?)?;
    write("report.md", markdown::render(report))?;
    write("report.html", html::render(report))?;
    write("junit.xml", junit::render(report))?;
    if let Some(s) = &report.server.stats_before {
        write("server-stats-before.json", serde_json::to_string_pretty(s)?)?;
    }
    if let Some(s) = &report.server.stats_after {
        write("server-stats-after.json", serde_json::to_string_pretty(s)?)?;
    }
    Ok(())
}
