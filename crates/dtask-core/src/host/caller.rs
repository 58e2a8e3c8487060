//! [`Caller`]: the host as one principal sees it.
//!
//! A task records who submitted it; a caller sees and manages its own
//! tasks, and a task of someone else is, to it, a task that does not exist
//! (`NotFound`, never "forbidden": the answer must not tell that it
//! exists). A principal holding the host's operator role sees and manages
//! every task, and alone lists the dead letters. Submitting a task that
//! declares `requires_role` takes one of those roles.

use super::{CancelOutcome, DeadLetteredTask, Host, RetryOutcome, TaskHandle, TaskOutcome};
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::infra::{ProgressPage, ProgressQuery, ProgressStream, QueueDepth, WorkerInfo};
use crate::principal::Principal;
use crate::progress::TaskProgress;
use crate::task::{Task, TaskDefinition};
use crate::trace::TraceParent;

/// The host as one [`Principal`] sees it: the same operations as
/// [`Host`]'s, scoped to the tasks the principal submitted (every task for
/// an operator). Cheap to make: one per request.
///
/// ```
/// # use dtask_core::{Host, Mode, Principal};
/// # async fn demo(host: Host) -> dtask_core::Result<()> {
/// let alice = host.caller(Principal::new("alice", ["uploader"]));
/// let page = alice.list(&Default::default()).await?; // alice's tasks only
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Caller {
    host: Host,
    principal: Principal,
    trace_parent: Option<TraceParent>,
}

impl Host {
    /// The host as `principal` sees it. See [`Caller`].
    pub fn caller(&self, principal: Principal) -> Caller {
        Caller {
            host: self.clone(),
            principal,
            trace_parent: None,
        }
    }

    /// The role whose holders see and manage every task
    /// ([`HostBuilder::operator_role`](super::HostBuilder::operator_role)).
    pub fn operator_role(&self) -> &str {
        &self.inner.operator_role
    }
}

impl Caller {
    /// The caller, whose submissions continue the trace of `parent` (an
    /// HTTP request's `traceparent`) when no tracing system gives the
    /// submit span a context of its own.
    #[must_use]
    pub fn with_trace_parent(mut self, parent: Option<TraceParent>) -> Self {
        self.trace_parent = parent;
        self
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Who calls.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Whether the caller holds the operator role.
    pub fn is_operator(&self) -> bool {
        self.principal.has_role(self.host.operator_role())
    }

    /// Whether the caller may see the task of `progress`: it submitted it,
    /// or it is an operator.
    pub fn owns(&self, progress: &TaskProgress) -> bool {
        self.is_operator() || progress.submitter.as_deref() == Some(self.principal.subject())
    }

    /// Checks that the caller may submit tasks of `definition`: it declares
    /// no required role, or the caller holds one of them.
    ///
    /// # Errors
    /// [`Error::Forbidden`] naming the roles that would do.
    pub fn may_submit(&self, definition: &TaskDefinition) -> Result<()> {
        let roles = definition.required_roles;
        if roles.is_empty() || roles.iter().any(|role| self.principal.has_role(role)) {
            return Ok(());
        }
        let roles: Vec<String> = roles.iter().map(|role| format!("`{role}`")).collect();
        Err(Error::Forbidden {
            reason: format!(
                "`{}` may be submitted only by holders of {}",
                definition.name,
                roles.join(" or ")
            ),
        })
    }

    /// [`Host::submit`], as the caller: the task records the caller as its
    /// submitter.
    ///
    /// # Errors
    /// [`Error::Forbidden`] when `T` requires a role the caller does not
    /// hold; otherwise as [`Host::submit`].
    pub async fn submit<T: Task>(&self, request: T::Request) -> Result<TaskHandle<T>> {
        self.submit_with_id::<T>(TaskId::new(), request).await
    }

    /// [`Host::submit_with_id`], as the caller.
    ///
    /// # Errors
    /// As [`Caller::submit`].
    pub async fn submit_with_id<T: Task>(&self, task_id: TaskId, request: T::Request) -> Result<TaskHandle<T>> {
        self.may_submit(T::definition())?;
        let submitter = Some(self.principal.subject().to_owned());
        (self.host)
            .submit_recorded::<T>(task_id, request, submitter, self.trace_parent)
            .await
    }

    /// [`Host::submit_many`], as the caller: each task records the caller
    /// as its submitter.
    ///
    /// # Errors
    /// As [`Caller::submit`], for the whole batch; each task's own failure
    /// is in its result.
    pub async fn submit_many<T: Task>(
        &self,
        requests: impl IntoIterator<Item = T::Request>,
    ) -> Result<Vec<Result<TaskHandle<T>>>> {
        self.may_submit(T::definition())?;
        let submitter = Some(self.principal.subject().to_owned());
        let tasks = requests.into_iter().map(|request| (TaskId::new(), request));
        (self.host)
            .submit_many_recorded::<T>(tasks, submitter, self.trace_parent)
            .await
    }

    /// The task's latest progress; `None` for an unknown task and for a
    /// task the caller may not see.
    ///
    /// # Errors
    /// A backend error.
    pub async fn progress(&self, task_id: TaskId) -> Result<Option<TaskProgress>> {
        Ok(self.host.progress(task_id).await?.filter(|p| self.owns(p)))
    }

    /// The task's progress, or [`Error::NotFound`] as for an unknown task.
    async fn owned(&self, task_id: TaskId) -> Result<TaskProgress> {
        self.progress(task_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("task {task_id}")))
    }

    /// [`Host::stream`] of a task the caller may see.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown task and for a task the caller
    /// may not see.
    pub async fn stream(&self, task_id: TaskId) -> Result<ProgressStream> {
        self.owned(task_id).await?;
        self.host.stream(task_id).await
    }

    /// [`Host::outcome`] of a task the caller may see.
    ///
    /// # Errors
    /// As [`Caller::stream`]; otherwise as [`Host::outcome`].
    pub async fn outcome<T: Task>(&self, task_id: TaskId) -> Result<TaskOutcome<T::Response>> {
        self.owned(task_id).await?;
        self.host.outcome::<T>(task_id).await
    }

    /// [`Host::cancel`] of a task the caller may see.
    ///
    /// # Errors
    /// As [`Caller::stream`].
    pub async fn cancel(&self, task_id: TaskId) -> Result<CancelOutcome> {
        self.owned(task_id).await?;
        self.host.cancel_by(task_id, Some(self.principal.subject())).await
    }

    /// [`Host::retry`] of a task the caller may see.
    ///
    /// # Errors
    /// As [`Caller::stream`]; otherwise as [`Host::retry`].
    pub async fn retry(&self, task_id: TaskId) -> Result<RetryOutcome> {
        self.owned(task_id).await?;
        self.host.retry_by(task_id, Some(self.principal.subject())).await
    }

    /// [`Host::list`]: the caller's own tasks, or every task for an
    /// operator (who may still filter by submitter).
    ///
    /// # Errors
    /// A backend error.
    pub async fn list(&self, query: &ProgressQuery) -> Result<ProgressPage> {
        if self.is_operator() {
            return self.host.list(query).await;
        }
        let own = ProgressQuery {
            submitter: Some(self.principal.subject().to_owned()),
            ..query.clone()
        };
        self.host.list(&own).await
    }

    /// [`Host::dead_letters`], for an operator.
    ///
    /// # Errors
    /// [`Error::Forbidden`] for a caller that is not an operator;
    /// otherwise as [`Host::dead_letters`].
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetteredTask>> {
        self.operator_only("the dead letters")?;
        self.host.dead_letters(limit).await
    }

    /// [`Host::queue_depths`], for operators only.
    ///
    /// # Errors
    /// [`Error::Forbidden`] for a caller that is not an operator;
    /// otherwise as [`Host::queue_depths`].
    pub async fn queue_depths(&self) -> Result<Vec<(String, QueueDepth)>> {
        self.operator_only("the queues")?;
        self.host.queue_depths().await
    }

    /// Refuses a caller that is not an operator, naming `what` it asked for.
    fn operator_only(&self, what: &str) -> Result<()> {
        if self.is_operator() {
            return Ok(());
        }
        Err(Error::Forbidden {
            reason: format!("{what} are listed for holders of `{}` only", self.host.operator_role()),
        })
    }

    /// [`Host::workers`], for operators only.
    ///
    /// # Errors
    /// [`Error::Forbidden`] for a caller that is not an operator;
    /// otherwise as [`Host::workers`].
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.operator_only("the workers")?;
        self.host.workers().await
    }
}
