//! The tasks that start when a task completes (`#[depends_on]`). The kernel
//! judges each edge on the upstream's response before the upstream
//! completes (the judgement is saved with its final state and shown in its
//! progress); the host starts the dependents after the final state is
//! saved and before the upstream's message is acknowledged, so a crash in
//! between starts them on redelivery. Starting one twice finds it: its id
//! is derived from the upstream's.
//!
//! An edge declared `compensate_upstream` holds the upstream open: once its
//! steps completed, the upstream is saved
//! [`AwaitingDependents`](TaskStatus::AwaitingDependents) and its message
//! acknowledged (it holds no worker slot while it waits). Each such
//! dependent, once ended and saved, sends the upstream's saved state back
//! to the upstream's queue ([`Runtime::resume_upstream`], before its own
//! message is acknowledged), and the worker that takes it reads the
//! dependents' ends ([`Runtime::awaited_dependents`]): the upstream
//! completes when they all completed and is compensated otherwise.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;

use super::Runtime;
use crate::error::Result;
use crate::id::TaskId;
use crate::infra::QueueMessage;
use crate::progress::{TaskProgress, TaskStatus};
use crate::task::{DependentTask, TaskDefinition};
use crate::trace::TraceParent;

/// A completed task's typed response, erased.
pub(crate) type AnyResponse = dyn Any + Send + Sync;

/// One edge, seen from the upstream: judges whether the dependent starts.
pub(crate) trait Dependent: Send + Sync {
    /// Judges the edge on the typed response of upstream task `upstream`.
    fn decide(&self, upstream: TaskId, response: &AnyResponse) -> DependentTask;
}

/// Starts the dependents a completed task recorded (the host does).
pub(crate) trait Starter: Send + Sync {
    /// Starts every dependent `progress` (of a completed task named
    /// `upstream`) records as started; `response` is its typed response.
    fn start<'a>(
        &'a self,
        upstream: &'static str,
        progress: &'a TaskProgress,
        response: &'a AnyResponse,
    ) -> BoxFuture<'a, Result<()>>;
}

/// The edges of a host's tasks, by upstream name, and who starts them.
#[derive(Default)]
pub(crate) struct Dependents {
    edges: HashMap<&'static str, Vec<Arc<dyn Dependent>>>,
    starter: OnceLock<Box<dyn Starter>>,
}

impl Dependents {
    /// The edges `edges` (upstream name, edge).
    pub(crate) fn new(edges: impl IntoIterator<Item = (&'static str, Arc<dyn Dependent>)>) -> Self {
        let mut by_upstream: HashMap<&'static str, Vec<Arc<dyn Dependent>>> = HashMap::new();
        for (upstream, edge) in edges {
            by_upstream.entry(upstream).or_default().push(edge);
        }
        Self {
            edges: by_upstream,
            starter: OnceLock::new(),
        }
    }

    /// Sets who starts the dependents (once, when the host exists).
    pub(crate) fn set_starter(&self, starter: Box<dyn Starter>) {
        let _ = self.starter.set(starter);
    }

    /// Judges every edge from `upstream` (task `task_id`) on its response;
    /// nothing (and no allocation) when no task depends on it.
    pub(crate) fn decide(&self, upstream: &str, task_id: TaskId, response: &AnyResponse) -> Vec<DependentTask> {
        self.edges
            .get(upstream)
            .map(|edges| edges.iter().map(|edge| edge.decide(task_id, response)).collect())
            .unwrap_or_default()
    }

    /// Starts what `progress` recorded; nothing when no task depends on
    /// `upstream`.
    ///
    /// # Errors
    /// A dependent that could not be submitted (the caller hands the
    /// upstream's message back, so it is tried again).
    pub(crate) async fn start(
        &self,
        upstream: &'static str,
        progress: &TaskProgress,
        response: &AnyResponse,
    ) -> Result<()> {
        if !progress.dependents.iter().any(|d| d.started) {
            return Ok(());
        }
        match self.starter.get() {
            Some(starter) => starter.start(upstream, progress, response).await,
            None => Ok(()),
        }
    }
}

/// How the dependents an upstream awaits stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Awaited {
    /// One has not ended (or is not started yet): its end resumes the
    /// upstream.
    Running,
    /// They all completed.
    Completed,
    /// One ended without completing; why.
    Failed(String),
}

impl Runtime {
    /// How the dependents that `upstream` (awaiting them) started with
    /// `compensate_upstream` edges stand, read from the tracker.
    ///
    /// # Errors
    /// A tracker that cannot be read.
    pub(crate) async fn awaited_dependents(&self, upstream: &TaskProgress) -> Result<Awaited> {
        let mut failures = Vec::new();
        for dependent in (upstream.dependents.iter()).filter(|d| d.started && d.compensates_upstream) {
            let Some(progress) = self.infra.progress.get(dependent.task_id).await? else {
                // Unknown to the tracker (a Redis restarted without its
                // data): its end, when its worker runs it, resumes the
                // upstream again.
                return Ok(Awaited::Running);
            };
            match progress.status {
                TaskStatus::Completed => {}
                status if status.is_terminal() => failures.push(format!(
                    "dependent task `{}` ({}) ended {}{}",
                    dependent.task_name,
                    dependent.task_id,
                    status.as_str(),
                    progress.error.map(|e| format!(": {e}")).unwrap_or_default()
                )),
                _ => return Ok(Awaited::Running),
            }
        }
        Ok(match failures.is_empty() {
            true => Awaited::Completed,
            false => Awaited::Failed(failures.join("; ")),
        })
    }

    /// Sends the upstream of `progress` (an ended task of `definition`,
    /// started by `#[depends_on]`) its saved state back, on its queue,
    /// when the edge is declared `compensate_upstream`, so that a worker
    /// concludes it; nothing otherwise, nor when the upstream has ended
    /// already. Called after `progress` is saved and before its message is
    /// acknowledged: a crash in between sends it again on redelivery, and
    /// an upstream resumed twice concludes once (under its lock).
    ///
    /// # Errors
    /// A tracker, store or queue that failed: the caller hands its message
    /// back.
    pub(crate) async fn resume_upstream(&self, definition: &TaskDefinition, progress: &TaskProgress) -> Result<()> {
        let Some(parent) = progress.parent_task_id else {
            return Ok(());
        };
        if !progress.is_terminal() || !definition.depends_on.iter().any(|edge| edge.compensate_upstream) {
            return Ok(());
        }
        let Some(upstream) = self.infra.progress.get(parent).await? else {
            tracing::warn!(task_id = %progress.task_id, upstream = %parent, "the tracker does not know the upstream task; it is not resumed");
            return Ok(());
        };
        let edge = (definition.depends_on.iter())
            .map(|edge| (edge, (edge.upstream)()))
            .find(|(edge, up)| edge.compensate_upstream && up.name == upstream.task_name);
        let Some((_, up)) = edge else {
            return Ok(());
        };
        if upstream.is_terminal() {
            return Ok(());
        }
        let Some(state) = self.infra.state.load(parent).await? else {
            tracing::warn!(task_id = %progress.task_id, upstream = %parent, "the upstream task has no saved state; it is not resumed");
            return Ok(());
        };
        let trace = (upstream.trace_id.as_deref()).and_then(TraceParent::of_trace);
        let message = QueueMessage::new(parent, up.name, state.payload).with_trace_parent(trace);
        self.infra.publisher.publish(up.queue, message).await?;
        tracing::debug!(task_id = %progress.task_id, upstream = %parent, "dependent ended; upstream resumed");
        Ok(())
    }
}
