//! Dead-lettered tasks: listing them, and replaying one from its last
//! snapshot.

use std::sync::Arc;

use super::Host;
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::infra::{DeadLetter, DeadLetters, QueueMessage};
use crate::kernel::member_queue;
use crate::progress::{TaskProgress, TaskStatus};
use crate::trace::TraceParent;

/// How many dead letters a queue is searched through for one task.
const SEARCH_LIMIT: usize = 10_000;

/// A task whose message was dead-lettered in one of the host's task
/// queues: the dead letter, and the task's error history.
#[derive(Debug, Clone)]
pub struct DeadLetteredTask {
    /// The task queue (as the task declares it, without a namespace), or
    /// the queue of its distributed groups' members (`<queue>.members`;
    /// the letter's message names the member).
    pub queue: String,
    /// The dead letter: why it was moved, after how many deliveries.
    pub letter: DeadLetter,
    /// The task's progress when listed: every step's status, attempts and
    /// last error. `None` when the message could not be read or the
    /// tracker does not know the task.
    pub progress: Option<TaskProgress>,
}

/// What [`Host::retry`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryOutcome {
    /// The task is back in its queue, to resume from its last snapshot.
    Requeued,
    /// The task has ended; there is nothing to replay.
    AlreadyEnded(TaskStatus),
    /// No dead letter of the task is in its queue's dead letters.
    NotDeadLettered,
}

impl Host {
    /// Up to `limit` dead letters of each queue the host's tasks use, queue
    /// by queue, oldest first within a queue, each with its task's progress
    /// (the steps' attempts and last errors).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the host has no dead-letter store
    /// ([`Infrastructure::dead_letters`](crate::Infrastructure::dead_letters));
    /// a backend error.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetteredTask>> {
        let store = self.dead_letter_store()?;
        let mut all = Vec::new();
        for queue in self.queues() {
            for letter in store.dead_letters(&queue, limit).await? {
                let progress = match &letter.message {
                    Some(message) => self.inner.rt.infra.progress.get(message.task_id).await?,
                    None => None,
                };
                all.push(DeadLetteredTask {
                    queue: queue.clone(),
                    letter,
                    progress,
                });
            }
        }
        Ok(all)
    }

    /// Replays a dead-lettered task: publishes it to its queue again, with
    /// its last saga snapshot (or, when none was saved, the dead-lettered
    /// message's state), and removes its dead letters. A worker then
    /// resumes it after its last completed step, its delivery count
    /// starting afresh. A dead-lettered member of a distributed group is
    /// published to the member queue again, to run (or resume) for the
    /// task still waiting for it.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown task; [`Error::Invalid`] for a
    /// task of a type this host does not serve; [`Error::Unsupported`] when
    /// the host has no dead-letter store; a backend error.
    pub async fn retry(&self, task_id: TaskId) -> Result<RetryOutcome> {
        self.retry_by(task_id, None).await
    }

    /// [`Host::retry`], audited as asked by `actor` (this process when
    /// `None`).
    pub(crate) async fn retry_by(&self, task_id: TaskId, actor: Option<&str>) -> Result<RetryOutcome> {
        let (outcome, trace_id) = self.retry_inner(task_id).await?;
        let detail = match outcome {
            RetryOutcome::Requeued => "requeued from the dead letters".to_owned(),
            RetryOutcome::NotDeadLettered => "refused: the task is not dead-lettered".to_owned(),
            RetryOutcome::AlreadyEnded(status) => format!("refused: the task already ended {}", status.as_str()),
        };
        (self.inner.rt).audit_request(task_id, actor, "retry", detail, trace_id);
        Ok(outcome)
    }

    /// The outcome, and the task's trace id.
    async fn retry_inner(&self, task_id: TaskId) -> Result<(RetryOutcome, Option<String>)> {
        let store = self.dead_letter_store()?;
        let infra = &self.inner.rt.infra;
        let progress = infra
            .progress
            .get(task_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("task {task_id}")))?;
        if progress.is_terminal() {
            return Ok((RetryOutcome::AlreadyEnded(progress.status), progress.trace_id));
        }
        let definition = self.tasks().find(|t| t.name == progress.task_name).ok_or_else(|| {
            Error::invalid(
                "task",
                format!("`{}` is not registered on this host", progress.task_name),
            )
        })?;
        let queue = definition.queue;
        let letters = letters_of(store, queue, task_id).await?;
        let Some(newest) = letters.last().and_then(|letter| letter.message.clone()) else {
            let members = member_queue(queue);
            let letters = letters_of(store, &members, task_id).await?;
            if letters.is_empty() {
                return Ok((RetryOutcome::NotDeadLettered, progress.trace_id));
            }
            // Each member's newest letter, as it was published: the member
            // run resumes from its own saved state, if it has one.
            let mut newest: Vec<&QueueMessage> = Vec::new();
            for message in letters.iter().rev().filter_map(|letter| letter.message.as_ref()) {
                if !newest.iter().any(|m| m.member == message.member) {
                    newest.push(message);
                }
            }
            for message in newest {
                let again = QueueMessage {
                    id: uuid::Uuid::now_v7(),
                    ..message.clone()
                };
                infra.publisher.publish(&members, again).await?;
            }
            remove_letters(store.as_ref(), &members, &letters, task_id).await;
            tracing::info!(%task_id, queue = members, "dead-lettered group members requeued");
            return Ok((RetryOutcome::Requeued, progress.trace_id));
        };
        let payload = match infra.state.load(task_id).await? {
            Some(stored) => stored.payload,
            None => newest.payload,
        };
        // The retried run stays in the task's trace.
        let trace_parent = newest
            .trace_parent
            .or_else(|| progress.trace_id.as_deref().and_then(TraceParent::of_trace));
        let message = QueueMessage::new(task_id, definition.name, payload).with_trace_parent(trace_parent);
        infra.publisher.publish(queue, message).await?;
        remove_letters(store.as_ref(), queue, &letters, task_id).await;
        tracing::info!(%task_id, queue, "dead-lettered task requeued");
        Ok((RetryOutcome::Requeued, progress.trace_id))
    }

    fn dead_letter_store(&self) -> Result<&Arc<dyn DeadLetters>> {
        self.inner.rt.infra.dead_letters.as_ref().ok_or_else(|| {
            Error::Unsupported("this host's queue keeps no dead letters (no dead-letter store is configured)".into())
        })
    }
}

/// The dead letters of `queue` whose message is about `task_id`, oldest
/// first.
async fn letters_of(store: &Arc<dyn DeadLetters>, queue: &str, task_id: TaskId) -> Result<Vec<DeadLetter>> {
    Ok(store
        .dead_letters(queue, SEARCH_LIMIT)
        .await?
        .into_iter()
        .filter(|letter| letter.message.as_ref().is_some_and(|m| m.task_id == task_id))
        .collect())
}

/// Removes `letters`, replayed, from `queue`'s dead letters.
async fn remove_letters(store: &dyn DeadLetters, queue: &str, letters: &[DeadLetter], task_id: TaskId) {
    for letter in letters {
        if let Err(error) = store.remove_dead_letter(queue, &letter.id).await {
            // The task is requeued; a dead letter left behind is only
            // listed once too often.
            tracing::warn!(%task_id, queue, %error, "could not remove a replayed dead letter");
        }
    }
}
