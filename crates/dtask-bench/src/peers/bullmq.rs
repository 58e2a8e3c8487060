//! BullMQ, the Node peer: `peers/bullmq/bench.mjs` (BullMQ pinned in its
//! `package.json` and lock file) runs the producer and a Worker in one Node
//! process on the same Redis, and prints its figures as one JSON line.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use super::Load;

/// Where the Node package is.
fn package() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/bullmq")
}

/// Makes BullMQ runnable: Node present, the pinned packages installed
/// (`npm ci`, once). Returns BullMQ's version, or why it cannot run.
pub(super) fn prepare() -> Result<String, String> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|output| output.status.success()) {
        return Err("Node.js is not installed (`node` is not on the PATH)".to_owned());
    }
    let dir = package();
    if dir.join("node_modules/bullmq/package.json").exists() {
        return version();
    }
    eprintln!("Peers: installing BullMQ (npm ci in {})", dir.display());
    let installed = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .stdout(Stdio::null())
        .status();
    match installed {
        Ok(status) if status.success() => version(),
        Ok(status) => Err(format!("`npm ci` in {} failed ({status})", dir.display())),
        Err(error) => Err(format!("cannot run npm: {error}")),
    }
}

/// The installed BullMQ's version.
fn version() -> Result<String, String> {
    let path = package().join("node_modules/bullmq/package.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    manifest["version"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} names no version", path.display()))
}

/// What `bench.mjs` prints.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    completed: usize,
    elapsed_ms: f64,
}

/// Runs `n` jobs under `load`, `concurrency` at once: the time from the
/// first add to the last completion.
///
/// # Errors
/// Node failing, a report that does not parse or does not count `n`, or a
/// run that does not end within `timeout`.
pub(super) async fn run(
    redis_url: &str,
    (n, concurrency): (usize, usize),
    load: Load,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(package().join("bench.mjs"))
        .args([redis_url.to_owned(), n.to_string(), concurrency.to_string()])
        .kill_on_drop(true)
        .stderr(Stdio::inherit());
    match load {
        Load::Bulk => command.arg("bulk"),
        Load::Window(window) => command.args(["window".to_owned(), window.to_string()]),
    };
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .with_context(|| format!("BullMQ did not finish within {} s", timeout.as_secs()))?
        .context("running node")?;
    anyhow::ensure!(output.status.success(), "bench.mjs failed ({})", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Report =
        serde_json::from_str(stdout.trim()).with_context(|| format!("bench.mjs printed {stdout:?}"))?;
    anyhow::ensure!(
        report.completed == n,
        "BullMQ completed {} of {n} jobs",
        report.completed
    );
    Ok(Duration::from_secs_f64(report.elapsed_ms / 1000.0))
}
