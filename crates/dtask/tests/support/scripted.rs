//! A cluster on loopback that one of the repository's scripts
//! (`scripts/rabbitmq-cluster`, `scripts/redis-cluster`) starts, stopped on
//! drop. Shared by the cluster tests of several crates (included by path),
//! so it depends on nothing but std and tokio.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Command;

/// A cluster on loopback run by `scripts/<script>`, stopped (and its data
/// deleted) on drop.
pub struct ScriptedCluster {
    script: &'static str,
}

impl ScriptedCluster {
    /// Starts the cluster; a failure to start fails the test. The guard
    /// exists first, so that a failed start is stopped too.
    pub async fn start(script: &'static str) -> Self {
        let cluster = Self { script };
        cluster.run_blocking(&["start"]).await;
        cluster
    }

    /// Runs the script; panics when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        run_script(self.script, args).unwrap_or_else(|error| panic!("{error}"))
    }

    /// [`run`](Self::run), off the runtime's threads.
    pub async fn run_blocking(&self, args: &[&str]) -> String {
        let script = self.script;
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_script(script, &args)
        })
        .await
        .expect("the script ran")
        .unwrap_or_else(|error| panic!("{error}"))
    }

    /// The nodes' URLs, as the script prints them.
    pub fn urls(&self) -> Vec<String> {
        self.run(&["urls"]).trim().split(',').map(str::to_owned).collect()
    }

    /// Kills node `node` with SIGKILL.
    pub async fn kill(&self, node: u8) {
        self.run_blocking(&["kill", &node.to_string()]).await;
    }
}

/// Runs `scripts/<script> <args>`; its output, or why it failed.
fn run_script(script: &str, args: &[&str]) -> Result<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let output = Command::new(path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run scripts/{script} {args:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!("scripts/{script} {args:?} failed: {stdout}{stderr}"))
}

impl Drop for ScriptedCluster {
    /// Stops the nodes; a failure is printed, not raised (a panic while a
    /// failing test unwinds would hide its own message).
    fn drop(&mut self) {
        if let Err(error) = run_script(self.script, &["stop"]) {
            eprintln!("{error}");
        }
    }
}
