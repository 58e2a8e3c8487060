//! [`MemoryProgressTracker`]: the latest snapshot of every task and live
//! streams of their changes, in memory.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::lock_mutex;
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::infra::{
    CancellationFeed, CancellationNotice, CancellationStream, ProgressPage, ProgressQuery, ProgressStream,
    ProgressTracker,
};
use crate::progress::TaskProgress;

/// How many ended tasks [`MemoryProgressTracker::new`] keeps.
const DEFAULT_RETENTION: usize = 10_000;

/// One task: its latest snapshot and the senders of its open streams.
struct Entry {
    progress: TaskProgress,
    subscribers: Vec<UnboundedSender<TaskProgress>>,
}

impl Entry {
    /// Sends `progress` to every open stream, forgetting closed ones.
    fn broadcast(&mut self) {
        let progress = &self.progress;
        self.subscribers
            .retain(|subscriber| subscriber.send(progress.clone()).is_ok());
    }
}

#[derive(Default)]
struct State {
    tasks: HashMap<TaskId, Entry>,
    /// Ended tasks, oldest ending first, for retention.
    ended: VecDeque<TaskId>,
    /// The open [`CancellationFeed`]s.
    feeds: Vec<UnboundedSender<TaskId>>,
}

/// A [`ProgressTracker`] keeping snapshots in memory.
///
/// Every operation runs under one short lock, so a stream's first snapshot
/// and its later changes are consistent: nothing is lost or repeated in
/// between. Streams are fed through unbounded channels, so a slow reader
/// never slows the task down (and buffers what it has not read yet).
///
/// Running tasks are kept until they end. Ended tasks are kept up to a
/// retention limit ([`with_retention`](Self::with_retention), 10 000 by
/// default), after which the ones that ended first are forgotten.
///
/// Once a task has ended, its snapshot is final: later updates are
/// ignored.
pub struct MemoryProgressTracker {
    state: Mutex<State>,
    max_ended: usize,
}

impl MemoryProgressTracker {
    /// A tracker keeping at most 10 000 ended tasks.
    pub fn new() -> Self {
        Self::with_retention(DEFAULT_RETENTION)
    }

    /// A tracker keeping at most `max_finished` ended tasks (running tasks
    /// are always kept).
    pub fn with_retention(max_finished: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_ended: max_finished,
        }
    }

    /// How many tasks are known, running or ended.
    pub fn len(&self) -> usize {
        lock_mutex(&self.state).tasks.len()
    }

    /// Whether no task is known.
    pub fn is_empty(&self) -> bool {
        lock_mutex(&self.state).tasks.is_empty()
    }

    /// Records that `task_id` has ended and forgets the oldest ended tasks
    /// beyond the retention limit.
    fn retire(&self, state: &mut State, task_id: TaskId) {
        state.ended.push_back(task_id);
        while state.ended.len() > self.max_ended {
            if let Some(oldest) = state.ended.pop_front() {
                state.tasks.remove(&oldest);
            }
        }
    }

    /// Stores a newer snapshot of a known task and sends it; ends the
    /// task's streams when it is terminal.
    fn record(&self, progress: &TaskProgress) -> Result<()> {
        let mut state = lock_mutex(&self.state);
        let entry = state
            .tasks
            .get_mut(&progress.task_id)
            .ok_or_else(|| unknown(progress.task_id))?;
        let stored = &entry.progress;
        let newer = progress.revision > stored.revision || (progress.is_terminal() && !stored.is_terminal());
        if stored.is_terminal() || !newer {
            return Ok(());
        }
        let cancel_requested = stored.cancel_requested || progress.cancel_requested;
        entry.progress = progress.clone();
        entry.progress.cancel_requested = cancel_requested;
        entry.broadcast();
        if progress.is_terminal() {
            // Dropping the senders ends the streams after this snapshot.
            entry.subscribers.clear();
            self.retire(&mut state, progress.task_id);
        }
        Ok(())
    }
}

impl Default for MemoryProgressTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryProgressTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock_mutex(&self.state);
        f.debug_struct("MemoryProgressTracker")
            .field("tasks", &state.tasks.len())
            .field("ended", &state.ended.len())
            .field("max_ended", &self.max_ended)
            .finish()
    }
}

fn unknown(task_id: TaskId) -> Error {
    Error::not_found(format!("task {task_id}"))
}

/// `first`, then what `changes` receives, ending after a terminal snapshot.
fn progress_stream(first: TaskProgress, changes: Option<UnboundedReceiver<TaskProgress>>) -> ProgressStream {
    let start = (!first.is_terminal()).then_some(changes).flatten();
    let rest = stream::unfold(start, |receiver| async move {
        let mut receiver = receiver?;
        let progress = receiver.recv().await?;
        let next = (!progress.is_terminal()).then_some(receiver);
        Some((progress, next))
    });
    stream::once(async move { first }).chain(rest).boxed()
}

#[async_trait]
impl ProgressTracker for MemoryProgressTracker {
    async fn init(&self, progress: &TaskProgress) -> Result<()> {
        let mut state = lock_mutex(&self.state);
        if state.tasks.contains_key(&progress.task_id) {
            return Err(Error::AlreadyExists {
                what: format!("task {}", progress.task_id),
            });
        }
        let entry = Entry {
            progress: progress.clone(),
            subscribers: Vec::new(),
        };
        state.tasks.insert(progress.task_id, entry);
        if progress.is_terminal() {
            self.retire(&mut state, progress.task_id);
        }
        Ok(())
    }

    /// Stores `progress` unless the stored snapshot has the same or a
    /// later revision, or has ended; keeps a requested cancellation.
    async fn update(&self, progress: &TaskProgress) -> Result<()> {
        self.record(progress)
    }

    /// Stores the terminal `progress` (over any running snapshot, whatever
    /// its revision), sends it and ends the task's streams.
    async fn complete(&self, progress: &TaskProgress) -> Result<()> {
        if !progress.is_terminal() {
            return Err(Error::invalid(
                "progress",
                format!(
                    "task {} cannot complete as {}",
                    progress.task_id,
                    progress.status.as_str()
                ),
            ));
        }
        self.record(progress)
    }

    async fn get(&self, task_id: TaskId) -> Result<Option<TaskProgress>> {
        let state = lock_mutex(&self.state);
        Ok(state.tasks.get(&task_id).map(|entry| entry.progress.clone()))
    }

    /// # Cancel safety
    /// The stream's `next()` is cancel safe: a dropped call loses no
    /// snapshot.
    async fn stream(&self, task_id: TaskId) -> Result<ProgressStream> {
        let mut state = lock_mutex(&self.state);
        let entry = state.tasks.get_mut(&task_id).ok_or_else(|| unknown(task_id))?;
        let current = entry.progress.clone();
        let changes = (!current.is_terminal()).then(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            entry.subscribers.push(sender);
            receiver
        });
        drop(state);
        Ok(progress_stream(current, changes))
    }

    /// Sets the sticky cancellation flag of a running task (without a new
    /// revision) and sends the snapshot to its streams.
    async fn request_cancellation(&self, task_id: TaskId) -> Result<TaskProgress> {
        let mut state = lock_mutex(&self.state);
        let entry = state.tasks.get_mut(&task_id).ok_or_else(|| unknown(task_id))?;
        if entry.progress.is_terminal() || entry.progress.cancel_requested {
            return Ok(entry.progress.clone());
        }
        entry.progress.cancel_requested = true;
        entry.broadcast();
        let progress = entry.progress.clone();
        state.feeds.retain(|feed| feed.send(task_id).is_ok());
        Ok(progress)
    }

    async fn list(&self, query: &ProgressQuery) -> Result<ProgressPage> {
        let state = lock_mutex(&self.state);
        let mut matches: Vec<&TaskProgress> = state
            .tasks
            .values()
            .map(|entry| &entry.progress)
            .filter(|p| query.status.is_none_or(|status| p.status == status))
            .filter(|p| query.task_name.as_deref().is_none_or(|name| p.task_name == name))
            .filter(|p| query.submitter.is_none() || p.submitter == query.submitter)
            .collect();
        matches.sort_unstable_by_key(|p| Reverse((p.created_at, p.task_id)));
        let total = matches.len();
        let items = matches
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect();
        Ok(ProgressPage { items, total })
    }
}

/// Notices come through unbounded channels: a feed never misses one, so it
/// never tells a [`CancellationNotice::Gap`].
#[async_trait]
impl CancellationFeed for MemoryProgressTracker {
    async fn cancellations(&self) -> Result<CancellationStream> {
        let (sender, receiver) = mpsc::unbounded_channel();
        lock_mutex(&self.state).feeds.push(sender);
        let notices = stream::unfold(receiver, |mut receiver| async move {
            let task_id = receiver.recv().await?;
            Some((CancellationNotice::Requested(task_id), receiver))
        });
        Ok(notices.boxed())
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::progress::TaskStatus;

    fn running() -> TaskProgress {
        let json = serde_json::json!({
            "taskId": TaskId::new(),
            "taskName": "Test",
            "status": "running",
            "totalSteps": 0,
            "completedSteps": 0,
            "percent": 0.0,
            "steps": [],
            "cancellable": true,
            "isComplete": false,
            "revision": 1,
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
        });
        serde_json::from_value(json).unwrap()
    }

    fn ended(progress: &TaskProgress) -> TaskProgress {
        let mut progress = progress.clone();
        progress.revision += 1;
        progress.status = TaskStatus::Completed;
        progress.is_complete = true;
        progress.completed_at = Some(OffsetDateTime::now_utc());
        progress
    }

    #[tokio::test]
    async fn retention_forgets_the_oldest_ended_tasks_only() {
        let tracker = MemoryProgressTracker::with_retention(2);
        let still_running = running();
        tracker.init(&still_running).await.unwrap();
        let tasks: Vec<TaskProgress> = (0..3).map(|_| running()).collect();
        for task in &tasks {
            tracker.init(task).await.unwrap();
        }
        for task in &tasks {
            tracker.complete(&ended(task)).await.unwrap();
        }

        assert!(tracker.get(tasks[0].task_id).await.unwrap().is_none());
        assert!(tracker.get(tasks[1].task_id).await.unwrap().is_some());
        assert!(tracker.get(tasks[2].task_id).await.unwrap().is_some());
        assert!(tracker.get(still_running.task_id).await.unwrap().is_some());
        assert_eq!(tracker.len(), 3);
    }

    #[tokio::test]
    async fn an_ended_task_ignores_later_updates() {
        let tracker = MemoryProgressTracker::new();
        let task = running();
        tracker.init(&task).await.unwrap();
        let done = ended(&task);
        tracker.complete(&done).await.unwrap();

        let mut late = task.clone();
        late.revision = 99;
        tracker.update(&late).await.unwrap();
        assert_eq!(tracker.get(task.task_id).await.unwrap(), Some(done));
    }

    #[tokio::test]
    async fn a_terminal_snapshot_wins_over_a_later_revision() {
        let tracker = MemoryProgressTracker::new();
        let mut task = running();
        tracker.init(&task).await.unwrap();
        let mut done = ended(&task);
        task.revision = 10;
        tracker.update(&task).await.unwrap();

        done.revision = 5;
        tracker.complete(&done).await.unwrap();
        assert!(tracker.get(task.task_id).await.unwrap().unwrap().is_terminal());
    }

    #[tokio::test]
    async fn closed_streams_are_forgotten() {
        let tracker = MemoryProgressTracker::new();
        let mut task = running();
        tracker.init(&task).await.unwrap();
        let stream = tracker.stream(task.task_id).await.unwrap();
        drop(stream);
        task.revision += 1;
        tracker.update(&task).await.unwrap();
        let state = lock_mutex(&tracker.state);
        assert!(state.tasks[&task.task_id].subscribers.is_empty());
    }

    #[tokio::test]
    async fn zero_retention_forgets_ended_tasks_at_once() {
        let tracker = MemoryProgressTracker::with_retention(0);
        let task = running();
        tracker.init(&task).await.unwrap();
        let mut stream = tracker.stream(task.task_id).await.unwrap();
        tracker.complete(&ended(&task)).await.unwrap();
        assert!(tracker.is_empty());
        let seen: Vec<u64> = stream.by_ref().map(|p| p.revision).collect().await;
        assert_eq!(seen, [1, 2], "the open stream still sees the end");
    }
}
