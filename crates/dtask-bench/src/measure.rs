//! Measuring a run of tasks: a window of tasks in flight, each task's
//! submit and completion times, the submit loops.
//!
//! A [`Tracker`] is told when each task starts ([`Tracker::begin`], which
//! first waits for a free slot in the window) and when it ends
//! ([`Tracker::end`], from a lossless `on_event` listener or from a worker
//! process's report). The run is over when every expected task has ended.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use dtask::{EventKind, TaskEvent, TaskId};
use tokio::sync::{Notify, Semaphore};

/// Start and end times of a run's tasks, and the window of tasks in flight.
#[derive(Debug)]
pub(crate) struct Tracker {
    state: Mutex<State>,
    window: Semaphore,
    finished: Notify,
    expected: usize,
    /// The same moment on both clocks, to place a wall-clock time (from
    /// another process) on the monotonic one.
    epoch: (Instant, SystemTime),
}

#[derive(Debug, Default)]
struct State {
    started: HashMap<TaskId, Instant>,
    latencies: Vec<Duration>,
    failed: usize,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    first_error: Option<String>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Tasks that completed.
    pub(crate) completed: usize,
    /// Tasks that ended otherwise (or whose submit failed).
    pub(crate) failed: usize,
    /// From the first start to the last end.
    pub(crate) elapsed: Duration,
    /// Submit-to-complete latencies of the completed tasks, sorted.
    pub(crate) latencies: Vec<Duration>,
    /// The first submit error, if a submit failed.
    pub(crate) first_error: Option<String>,
}

impl Outcome {
    /// Ended tasks per second.
    pub(crate) fn rate(&self) -> f64 {
        (self.completed + self.failed) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile (0 < p <= 1) of the latencies.
    pub(crate) fn percentile(&self, p: f64) -> Option<Duration> {
        crate::stats::percentile(&self.latencies, p)
    }
}

impl Tracker {
    /// A tracker of `expected` tasks, at most `window` in flight.
    pub(crate) fn new(expected: usize, window: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                started: HashMap::with_capacity(window.min(expected) * 2),
                latencies: Vec::with_capacity(expected),
                ..State::default()
            }),
            window: Semaphore::new(window.max(1)),
            finished: Notify::new(),
            expected,
            epoch: (Instant::now(), SystemTime::now()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a free slot in the window, then records that task `id`
    /// starts now.
    pub(crate) async fn begin(&self, id: TaskId) {
        if let Ok(permit) = self.window.acquire().await {
            permit.forget();
        }
        let now = Instant::now();
        let mut state = self.state();
        state.first_start.get_or_insert(now);
        state.started.insert(id, now);
    }

    /// Records that task `id` ended at `at`; `completed` when it completed.
    /// An unknown id (another run's task) is ignored.
    pub(crate) fn end(&self, id: TaskId, at: Instant, completed: bool) {
        let done = {
            let mut state = self.state();
            let Some(started) = state.started.remove(&id) else {
                return;
            };
            if completed {
                state.latencies.push(at.saturating_duration_since(started));
            } else {
                state.failed += 1;
            }
            state.last_end = Some(state.last_end.map_or(at, |last| last.max(at)));
            state.latencies.len() + state.failed >= self.expected
        };
        self.window.add_permits(1);
        if done {
            self.finished.notify_one();
        }
    }

    /// [`Tracker::end`] with a wall-clock time in nanoseconds since the
    /// Unix epoch (reported by another process on this machine).
    pub(crate) fn end_at_unix_nanos(&self, id: TaskId, unix_nanos: u128, completed: bool) {
        let epoch_nanos = self.epoch.1.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let at = if unix_nanos >= epoch_nanos {
            self.epoch.0 + nanos(unix_nanos - epoch_nanos)
        } else {
            self.epoch
                .0
                .checked_sub(nanos(epoch_nanos - unix_nanos))
                .unwrap_or(self.epoch.0)
        };
        self.end(id, at, completed);
    }

    /// A listener for [`dtask::HostBuilder::on_event`] that ends each task
    /// at its terminal event.
    pub(crate) fn listener(self: &Arc<Self>) -> impl Fn(&TaskEvent) + Send + Sync + 'static {
        let tracker = Arc::clone(self);
        move |event| {
            if let Some(completed) = terminal(&event.kind) {
                tracker.end(event.task_id, Instant::now(), completed);
            }
        }
    }

    /// Waits until every expected task has ended, at most `timeout`.
    ///
    /// # Errors
    /// When the time runs out, saying how many tasks ended.
    pub(crate) async fn wait(&self, timeout: Duration) -> anyhow::Result<Outcome> {
        let all_ended = async {
            loop {
                let notified = self.finished.notified();
                if self.ended() >= self.expected {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(timeout, all_ended).await.is_err() {
            let unended: Vec<String> = self.state().started.keys().take(5).map(ToString::to_string).collect();
            bail!(
                "only {} of {} tasks ended in time (not ended: {})",
                self.ended(),
                self.expected,
                unended.join(", ")
            );
        }
        let mut state = self.state();
        let mut latencies = std::mem::take(&mut state.latencies);
        latencies.sort_unstable();
        let elapsed = match (state.first_start, state.last_end) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        Ok(Outcome {
            completed: latencies.len(),
            failed: state.failed,
            elapsed,
            latencies,
            first_error: state.first_error.take(),
        })
    }

    fn ended(&self) -> usize {
        let state = self.state();
        state.latencies.len() + state.failed
    }
}

/// The tracker of the current phase of a run (warm-up, counting, timed):
/// listeners and worker reports go through it to whichever tracker is set.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrackerSlot(Arc<Mutex<Option<Arc<Tracker>>>>);

impl TrackerSlot {
    /// Makes `tracker` the current one.
    pub(crate) fn set(&self, tracker: &Arc<Tracker>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(tracker));
    }

    fn current(&self) -> Option<Arc<Tracker>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// [`Tracker::end_at_unix_nanos`] on the current tracker.
    pub(crate) fn end_at_unix_nanos(&self, id: TaskId, unix_nanos: u128, completed: bool) {
        if let Some(tracker) = self.current() {
            tracker.end_at_unix_nanos(id, unix_nanos, completed);
        }
    }

    /// [`Tracker::listener`] for whichever tracker is current.
    pub(crate) fn listener(&self) -> impl Fn(&TaskEvent) + Send + Sync + 'static {
        let slot = self.clone();
        move |event| {
            if let Some(completed) = terminal(&event.kind)
                && let Some(tracker) = slot.current()
            {
                tracker.end(event.task_id, Instant::now(), completed);
            }
        }
    }
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

/// Whether `kind` ends a task: `Some(true)` when it completed,
/// `Some(false)` when it ended otherwise.
pub(crate) fn terminal(kind: &EventKind) -> Option<bool> {
    match kind {
        EventKind::Completed => Some(true),
        EventKind::Failed { .. }
        | EventKind::Compensated { .. }
        | EventKind::Cancelled
        | EventKind::CompensationFailed { .. } => Some(false),
        _ => None,
    }
}

/// Submits `n` tasks from `submitters` concurrent loops, each task through
/// `submit(id, index)` once the tracker's window lets it start, then waits
/// for all of them to end (at most `timeout`). A failed submit counts as a
/// failed task (the first error is kept in the outcome).
///
/// # Errors
/// A panicked submit loop, or the tracker's timeout.
pub(crate) async fn drive<F, Fut>(
    tracker: &Arc<Tracker>,
    n: usize,
    submitters: usize,
    timeout: Duration,
    submit: F,
) -> anyhow::Result<Outcome>
where
    F: Fn(TaskId, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = dtask::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for _ in 0..submitters.max(1) {
        let (tracker, next, submit) = (Arc::clone(tracker), Arc::clone(&next), submit.clone());
        loops.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= n {
                    return;
                }
                let id = TaskId::new();
                tracker.begin(id).await;
                if let Err(error) = submit(id, index as u64).await {
                    tracker.state().first_error.get_or_insert_with(|| error.to_string());
                    tracker.end(id, Instant::now(), false);
                }
            }
        }));
    }
    let started = Instant::now();
    let aborts: Vec<_> = loops.iter().map(tokio::task::JoinHandle::abort_handle).collect();
    let submitted = tokio::time::timeout(timeout, async {
        for submitter in loops {
            submitter.await.context("a submit loop panicked")?;
        }
        anyhow::Ok(())
    })
    .await;
    match submitted {
        Ok(result) => result?,
        Err(_) => {
            // The window stayed full: tasks stopped ending.
            for abort in aborts {
                abort.abort();
            }
            return tracker.wait(Duration::ZERO).await;
        }
    }
    tracker.wait(timeout.saturating_sub(started.elapsed())).await
}

/// Submits `n` tasks in batches of `batch`, one batch after the other
/// (`submit_batch` gets each task's id and index and answers each), then
/// waits for all of them to end (at most `timeout`). A failed submit counts
/// as a failed task.
///
/// # Errors
/// The tracker's timeout.
pub(crate) async fn drive_batches<F, Fut>(
    tracker: &Arc<Tracker>,
    (n, batch): (usize, usize),
    timeout: Duration,
    submit_batch: F,
) -> anyhow::Result<Outcome>
where
    F: Fn(Vec<(TaskId, u64)>) -> Fut,
    Fut: Future<Output = dtask::Result<Vec<dtask::Result<()>>>>,
{
    let started = Instant::now();
    let indexes: Vec<usize> = (0..n).collect();
    for chunk in indexes.chunks(batch.max(1)) {
        let mut tasks = Vec::with_capacity(chunk.len());
        for &index in chunk {
            let id = TaskId::new();
            tracker.begin(id).await;
            tasks.push((id, index as u64));
        }
        let ids: Vec<TaskId> = tasks.iter().map(|(id, _)| *id).collect();
        let results = match submit_batch(tasks).await {
            Ok(results) => results,
            Err(error) => ids
                .iter()
                .map(|_| Err(dtask::Error::invalid("batch", error.to_string())))
                .collect(),
        };
        for (id, result) in ids.into_iter().zip(results) {
            if let Err(error) = result {
                tracker.state().first_error.get_or_insert_with(|| error.to_string());
                tracker.end(id, Instant::now(), false);
            }
        }
    }
    tracker.wait(timeout.saturating_sub(started.elapsed())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_whose_tasks_never_end_times_out() {
        let tracker = Tracker::new(3, 1);
        let outcome = drive(&tracker, 3, 1, Duration::from_millis(50), |_, _| async { Ok(()) }).await;
        let error = outcome.expect_err("nothing ends the tasks");
        assert!(
            error.to_string().starts_with("only 0 of 3 tasks ended in time"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_run_ends_when_every_task_has_ended() {
        let tracker = Tracker::new(2, 2);
        let (a, b) = (TaskId::new(), TaskId::new());
        tracker.begin(a).await;
        tracker.begin(b).await;
        tracker.end(a, Instant::now(), true);
        tracker.end(TaskId::new(), Instant::now(), true); // not ours: ignored
        tracker.end(b, Instant::now(), false);
        let outcome = tracker.wait(Duration::from_secs(1)).await.expect("both ended");
        assert_eq!((outcome.completed, outcome.failed), (1, 1));
    }
}
