//! What the cluster tests share: a cluster that one of the scripts
//! (`scripts/rabbitmq-cluster`, `scripts/redis-cluster`) starts and that is
//! stopped on drop, and a three-step task whose middle step the test holds
//! closed, counting every step's runs.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dtask::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

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

/// Parcels `from..to`.
pub fn parcels(from: usize, to: usize) -> Vec<Parcel> {
    (from..to)
        .map(|i| Parcel {
            label: format!("parcel-{i}"),
        })
        .collect()
}

/// The request: which parcel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Parcel {
    pub label: String,
}

/// A step's output: the steps that touched the parcel so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamp {
    pub by: String,
}

/// The response: every step's stamp.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub stamps: Vec<String>,
}

/// Counts the runs of each step of each parcel, and holds `Pack` closed
/// until the test opens it.
#[derive(Debug, Clone)]
pub struct Floor {
    runs: Arc<Mutex<BTreeMap<String, usize>>>,
    arrived: Arc<AtomicUsize>,
    arrival: Arc<Notify>,
    open: watch::Receiver<bool>,
}

impl Floor {
    /// A floor with `Pack` closed, and the sender that opens it.
    pub fn closed() -> (Self, watch::Sender<bool>) {
        let (open, opened) = watch::channel(false);
        let floor = Self {
            runs: Arc::default(),
            arrived: Arc::default(),
            arrival: Arc::default(),
            open: opened,
        };
        (floor, open)
    }

    /// How many times `step` ran for the parcel `label`.
    pub fn runs(&self, step: &str, label: &str) -> usize {
        let runs = self.runs.lock().unwrap();
        runs.get(&format!("{step} {label}")).copied().unwrap_or(0)
    }

    fn ran(&self, step: &str, parcel: &Parcel) {
        let key = format!("{step} {}", parcel.label);
        *self.runs.lock().unwrap().entry(key).or_default() += 1;
    }

    /// Returns once `at_least` runs of `Pack` have started.
    pub async fn until_arrived(&self, at_least: usize) {
        loop {
            let notified = self.arrival.notified();
            if self.arrived.load(Ordering::SeqCst) >= at_least {
                return;
            }
            notified.await;
        }
    }
}

/// Pick → Pack → Post: three steps, three saves.
#[dtask::task(
    name = "ShipParcel",
    request = Parcel,
    response = Receipt,
    queue = "parcels",
    max_retries = 0,
    timeout_secs = 300,
    mode = InProcess
)]
#[custom_step(Pick, order = 1, output = Stamp)]
#[custom_step(Pack, order = 2, inputs(pick), output = Stamp)]
#[custom_step(Post, order = 3, inputs(pack), output = Stamp)]
#[derive(Debug, Clone)]
pub struct ShipParcel {
    pub floor: Floor,
}

impl ship_parcel::Steps for ShipParcel {
    async fn pick(&self, _cx: &StepContext, input: ship_parcel::PickInput<'_>) -> Result<Stamp, StepError> {
        self.floor.ran("pick", input.request);
        Ok(Stamp { by: "pick".into() })
    }

    async fn pack(&self, _cx: &StepContext, input: ship_parcel::PackInput<'_>) -> Result<Stamp, StepError> {
        self.floor.ran("pack", input.request);
        self.floor.arrived.fetch_add(1, Ordering::SeqCst);
        self.floor.arrival.notify_waiters();
        let mut open = self.floor.open.clone();
        open.wait_for(|open| *open)
            .await
            .map_err(|_| StepError::permanent("the test ended"))?;
        Ok(Stamp {
            by: format!("{}+pack", input.pick.by),
        })
    }

    async fn post(&self, _cx: &StepContext, input: ship_parcel::PostInput<'_>) -> Result<Stamp, StepError> {
        self.floor.ran("post", input.request);
        Ok(Stamp {
            by: format!("{}+post", input.pack.by),
        })
    }

    fn response(&self, outputs: ship_parcel::Outputs<'_>) -> Result<Receipt, StepError> {
        Ok(Receipt {
            stamps: vec![
                outputs.pick.by.clone(),
                outputs.pack.by.clone(),
                outputs.post.by.clone(),
            ],
        })
    }
}
