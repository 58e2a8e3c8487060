//! What a running step receives besides its typed input.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::StepRef;
use crate::id::TaskId;
use crate::infra::ObjectStore;

/// A step's own progress report: how far it has come and what it is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Done fraction, 0 to 1.
    pub fraction: f64,
    /// What it is doing.
    pub message: Option<String>,
}

/// The context of one step attempt: who it is, its cancellation token, the
/// object store, a scratch directory and a way to report progress.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub(crate) task_id: TaskId,
    pub(crate) task_name: &'static str,
    pub(crate) step: StepRef,
    pub(crate) attempt: u32,
    pub(crate) token: CancellationToken,
    pub(crate) storage: Arc<dyn ObjectStore>,
    pub(crate) scratch_dir: PathBuf,
    pub(crate) reports: Arc<watch::Sender<Option<StepReport>>>,
}

impl StepContext {
    /// The task's id.
    pub fn task_id(&self) -> TaskId {
        self.task_id
    }

    /// The task's declared name.
    pub fn task_name(&self) -> &'static str {
        self.task_name
    }

    /// The step's declared name.
    pub fn step_name(&self) -> &'static str {
        self.step.name
    }

    /// The attempt number, 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A key that is the same for every attempt and every redelivery of
    /// this step of this task: `{task_id}/{step}`. Use it to make external
    /// side effects idempotent (deterministic object keys, request ids for
    /// remote APIs).
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.task_id, self.step.name)
    }

    /// The token that fires when the task is cancelled, times out, or this
    /// attempt exceeds its time limit. Long steps should watch it.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.token
    }

    /// Completes when the token fires.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Whether the token has fired.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The object store.
    pub fn storage(&self) -> &Arc<dyn ObjectStore> {
        &self.storage
    }

    /// A directory private to this task on this host, created on first use
    /// and removed when the task ends here.
    ///
    /// # Errors
    /// The I/O error of creating it.
    pub async fn scratch_dir(&self) -> std::io::Result<&Path> {
        tokio::fs::create_dir_all(&self.scratch_dir).await?;
        Ok(&self.scratch_dir)
    }

    /// Reports how far the step has come (`fraction` from 0 to 1) and what
    /// it is doing. Cheap: the kernel publishes the latest report, never a
    /// backlog.
    pub fn report_progress(&self, fraction: f64, message: impl Into<Option<String>>) {
        let report = StepReport {
            fraction: fraction.clamp(0.0, 1.0),
            message: message.into(),
        };
        self.reports.send_replace(Some(report));
    }
}
