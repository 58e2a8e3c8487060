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
//! [`AwaitingDependents`](crate::TaskStatus::AwaitingDependents) and its
//! message acknowledged; the host resumes it when its dependents end (see
//! `host/chain.rs`).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;

use crate::error::Result;
use crate::id::TaskId;
use crate::progress::TaskProgress;
use crate::task::DependentTask;

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
