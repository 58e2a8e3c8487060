//! The host: where tasks are submitted, run, watched and cancelled.
//!
//! A [`Host`] is built once ([`Host::builder`]) with the tasks it serves
//! and the infrastructure it runs on. In InProcess mode every service is in
//! memory and the worker loops run inside the host as tokio tasks; in
//! Distributed mode the same host talks to real backends, and may run only
//! the API side or only the workers.
//!
//! ```
//! # use dtask_core::{Host, Mode};
//! # async fn demo() -> dtask_core::Result<()> {
//! let host = Host::builder().mode(Mode::InProcess).build()?;
//! # host.shutdown().await;
//! # Ok(()) }
//! ```

mod builder;
mod caller;
mod cancellations;
mod chain;
mod dead_letters;
mod depths;
mod handle;
mod history;
mod presence;
mod run_guard;
mod submit;
mod submit_many;
pub(crate) mod worker;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::task::TaskTracker;

pub use crate::infra::Infrastructure;
pub use crate::kernel::{EventListener, HistorySettings, KernelSettings, StepInterceptor};
pub use builder::HostBuilder;
pub use caller::Caller;
pub use dead_letters::{DeadLetteredTask, RetryOutcome};
pub use handle::{CancelOutcome, TaskHandle, TaskOutcome};
pub use presence::HEARTBEAT_TTL;

use crate::error::{Error, Result};
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::infra::{ProgressPage, ProgressQuery, ProgressStream};
use crate::kernel::Runtime;
use crate::progress::{TaskProgress, TaskStatus};
use crate::task::{Mode, Task, TaskDefinition};
use crate::trace::TraceBridge;

/// A running host. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

struct RegisteredTask {
    definition: &'static TaskDefinition,
    typed: Arc<dyn Any + Send + Sync>,
}

struct HostInner {
    rt: Arc<Runtime>,
    mode: Mode,
    tasks: HashMap<&'static str, RegisteredTask>,
    workers: TaskTracker,
    runs_workers: bool,
    /// The role whose holders see and manage every task.
    operator_role: String,
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The mode the host runs in.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The services the host runs on.
    pub fn infrastructure(&self) -> &Infrastructure {
        &self.inner.rt.infra
    }

    /// The bridge linking the kernel's spans to a tracing system
    /// ([`HostBuilder::trace_bridge`]), for layers (HTTP) that continue a
    /// caller's trace.
    pub fn trace_bridge(&self) -> Option<&Arc<dyn TraceBridge>> {
        self.inner.rt.tracer.as_ref()
    }

    /// This process's node name: how its steps' progress
    /// ([`StepState::worker`](crate::StepState::worker)), its history
    /// records and its entry in the worker registry name it
    /// (`<host name>:<pid>` unless [`HostBuilder::node_name`] set it).
    pub fn node_name(&self) -> &str {
        &self.inner.rt.node
    }

    /// The definitions of the registered tasks.
    pub fn tasks(&self) -> impl Iterator<Item = &'static TaskDefinition> + '_ {
        self.inner.tasks.values().map(|t| t.definition)
    }

    /// The queues of the host's tasks, and the member queues of those whose
    /// parallel groups are distributed, sorted.
    pub(crate) fn queues(&self) -> Vec<String> {
        served_queues(self.tasks(), self.inner.rt.settings.group_distribution)
    }

    /// A receiver of every event of every task, from now on. A receiver
    /// that falls far behind misses events (it is told how many); use
    /// [`HostBuilder::on_event`] for a lossless listener.
    pub fn events(&self) -> broadcast::Receiver<TaskEvent> {
        self.inner.rt.events.subscribe()
    }

    /// The task's latest progress snapshot.
    ///
    /// # Errors
    /// A backend error.
    pub async fn progress(&self, task_id: TaskId) -> Result<Option<TaskProgress>> {
        self.inner.rt.infra.progress.get(task_id).await
    }

    /// The task's progress: the current snapshot, then every change, ending
    /// after the terminal one.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown task.
    pub async fn stream(&self, task_id: TaskId) -> Result<ProgressStream> {
        self.inner.rt.infra.progress.stream(task_id).await
    }

    /// Recent tasks, newest first.
    ///
    /// # Errors
    /// A backend error.
    pub async fn list(&self, query: &ProgressQuery) -> Result<ProgressPage> {
        self.inner.rt.infra.progress.list(query).await
    }

    /// Asks a task to stop. Its running step's token fires, then its
    /// completed steps are compensated and it ends as cancelled.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown task.
    pub async fn cancel(&self, task_id: TaskId) -> Result<CancelOutcome> {
        self.cancel_by(task_id, None).await
    }

    /// [`Host::cancel`], audited as asked by `actor` (this process when
    /// `None`).
    pub(crate) async fn cancel_by(&self, task_id: TaskId, actor: Option<&str>) -> Result<CancelOutcome> {
        let rt = &self.inner.rt;
        let progress = rt
            .infra
            .progress
            .get(task_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("task {task_id}")))?;
        let trace_id = progress.trace_id.clone();
        let outcome = self.cancel_inner(progress).await?;
        let detail = match outcome {
            CancelOutcome::Requested => "requested".to_owned(),
            CancelOutcome::NotCancellable => "refused: the task is not cancellable".to_owned(),
            CancelOutcome::AlreadyEnded(status) => format!("refused: the task already ended {}", status.as_str()),
        };
        rt.audit_request(task_id, actor, "cancel", detail, trace_id);
        Ok(outcome)
    }

    async fn cancel_inner(&self, progress: TaskProgress) -> Result<CancelOutcome> {
        let rt = &self.inner.rt;
        let task_id = progress.task_id;
        if progress.is_terminal() {
            return Ok(CancelOutcome::AlreadyEnded(progress.status));
        }
        if !progress.cancellable {
            return Ok(CancelOutcome::NotCancellable);
        }
        let progress = rt.infra.progress.request_cancellation(task_id).await?;
        if progress.is_terminal() {
            return Ok(CancelOutcome::AlreadyEnded(progress.status));
        }
        if let Some(control) = rt.local_control(task_id) {
            control.stop(crate::kernel::StopReason::Cancelled);
        }
        if progress.status == TaskStatus::AwaitingDependents {
            // No run holds it: the dependents it awaits are asked to stop,
            // and it is cancelled once they ended.
            let awaited = (progress.dependents.iter()).filter(|d| d.started && d.compensates_upstream);
            for dependent in awaited {
                if let Some(dependent) = rt.infra.progress.get(dependent.task_id).await? {
                    Box::pin(self.cancel_inner(dependent)).await?;
                }
            }
        }
        Ok(CancelOutcome::Requested)
    }

    /// The task's outcome: its progress, and its response once completed.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown task; [`Error::Invalid`] when the
    /// task is not a `T`.
    pub async fn outcome<T: Task>(&self, task_id: TaskId) -> Result<TaskOutcome<T::Response>> {
        let rt = &self.inner.rt;
        let progress = self
            .progress(task_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("task {task_id}")))?;
        if progress.task_name != T::definition().name {
            return Err(Error::invalid(
                "task type",
                format!(
                    "task {task_id} is a `{}`, not a `{}`",
                    progress.task_name,
                    T::definition().name
                ),
            ));
        }
        let response = match progress.status {
            crate::TaskStatus::Completed => {
                let stored = rt
                    .infra
                    .state
                    .load(task_id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("saga state of task {task_id}")))?;
                rt.decode_state::<T>(task_id, &stored.payload)?.response
            }
            _ => None,
        };
        Ok(TaskOutcome { progress, response })
    }

    /// Stops gracefully: the worker loops take no new message; each running
    /// task finishes its running step (its outcome recorded: snapshot saved,
    /// progress written), then is handed back to the queue unless it ended,
    /// and its lock released, so another worker resumes it at once. Steps
    /// still running when [`KernelSettings::shutdown_grace`] is over are
    /// cancelled and their tasks handed back too. Returns once every worker
    /// loop and task has ended (about `shutdown_grace + cancel_grace` at
    /// most). An API-only host returns at once.
    ///
    /// Calling it again waits for the same shutdown.
    pub async fn shutdown(&self) {
        let rt = &self.inner.rt;
        rt.shutdown.cancel();
        self.inner.workers.close();
        let grace = rt.settings.shutdown_grace;
        if tokio::time::timeout(grace, self.inner.workers.wait()).await.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "the shutdown grace is over: cancelling the steps still running and handing their tasks back"
            );
            rt.grace_over.cancel();
            self.inner.workers.wait().await;
        }
        if let Some(history) = &rt.history {
            history.close().await;
        }
    }

    fn registered<T: Task>(&self) -> Result<Arc<T>> {
        let name = T::definition().name;
        self.inner
            .tasks
            .get(name)
            .and_then(|t| Arc::clone(&t.typed).downcast::<T>().ok())
            .ok_or_else(|| Error::invalid("task", format!("`{name}` is not registered on this host")))
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("mode", &self.inner.mode)
            .field("tasks", &self.inner.tasks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod cancellation_tests;
#[cfg(test)]
mod shutdown_tests;

/// The queues `tasks` are served from: their own, and the member queues of
/// those whose parallel groups `distribution` distributes; sorted, each
/// once.
pub(crate) fn served_queues<'a>(
    tasks: impl Iterator<Item = &'a TaskDefinition>,
    distribution: crate::task::GroupDistribution,
) -> Vec<String> {
    let mut queues: Vec<String> = tasks
        .flat_map(|task| {
            let members = (task.groups.iter())
                .any(|group| distribution.distributes(group))
                .then(|| crate::kernel::member_queue(task.queue));
            std::iter::once(task.queue.to_owned()).chain(members)
        })
        .collect();
    queues.sort_unstable();
    queues.dedup();
    queues
}
