//! The recorder: the one place a task's progress changes. Every change is
//! an event, folded into the progress snapshot, told to the host's
//! listeners and written to the progress tracker.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;

use crate::event::{EventKind, TaskEvent};
use crate::id::TaskId;
use crate::progress::TaskProgress;

use crate::host::runtime::Runtime;

pub(crate) struct Recorder<'r> {
    rt: &'r Runtime,
    task_id: TaskId,
    progress: Mutex<TaskProgress>,
    /// The newest revision written to the tracker: a folded change is
    /// written by the next write, or by [`Recorder::flush`].
    written: AtomicU64,
}

impl<'r> Recorder<'r> {
    pub(crate) fn new(rt: &'r Runtime, progress: TaskProgress) -> Self {
        Self {
            rt,
            task_id: progress.task_id,
            written: AtomicU64::new(progress.revision),
            progress: Mutex::new(progress),
        }
    }

    /// Folds `kind` into the snapshot and tells the listeners; returns the
    /// new snapshot, to be written with [`Recorder::write`].
    pub(crate) fn apply(&self, kind: EventKind) -> TaskProgress {
        let event = TaskEvent {
            task_id: self.task_id,
            at: OffsetDateTime::now_utc(),
            kind,
        };
        let snapshot = {
            let mut progress = self.lock();
            progress.apply(&event);
            progress.clone()
        };
        self.rt.publish_event(&event);
        snapshot
    }

    /// Folds `kind` into the snapshot and tells the listeners, leaving the
    /// tracker write to the next event, which follows at once (a step
    /// completed and the next one started: one write instead of two), or
    /// to [`Recorder::flush`].
    pub(crate) fn fold(&self, kind: EventKind) {
        let event = TaskEvent {
            task_id: self.task_id,
            at: OffsetDateTime::now_utc(),
            kind,
        };
        self.lock().apply(&event);
        self.rt.publish_event(&event);
    }

    /// Writes the snapshot if it holds folded changes not written yet.
    pub(crate) async fn flush(&self) {
        let snapshot = {
            let progress = self.lock();
            if progress.revision <= self.written.load(Ordering::Acquire) {
                return;
            }
            progress.clone()
        };
        self.write(&snapshot).await;
    }

    /// Records `kind`: folds it and writes the snapshot to the tracker.
    pub(crate) async fn record(&self, kind: EventKind) {
        let snapshot = self.apply(kind);
        self.write(&snapshot).await;
    }

    /// Writes a snapshot to the tracker. A tracker failure is logged, not
    /// fatal: the saga's own record is the state snapshot, and the next
    /// write carries every change.
    pub(crate) async fn write(&self, snapshot: &TaskProgress) {
        let tracker = &self.rt.infra.progress;
        self.written.fetch_max(snapshot.revision, Ordering::AcqRel);
        let result = if snapshot.is_terminal() {
            tracker.complete(snapshot).await
        } else {
            tracker.update(snapshot).await
        };
        if let Err(error) = result {
            tracing::warn!(task_id = %self.task_id, %error, "could not write progress");
        }
    }

    pub(crate) fn snapshot(&self) -> TaskProgress {
        self.lock().clone()
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&TaskProgress) -> R) -> R {
        f(&self.lock())
    }

    /// Catches up with what the tracker saw after the last saved state (a
    /// worker that died mid-step recorded its attempt there only): the
    /// revision counter, so later writes are not taken for stale ones, and
    /// each step's attempt count, so attempts add up across workers and a
    /// step that kills every worker runs out of retries.
    pub(crate) fn catch_up(&self, tracked: &TaskProgress) {
        let mut progress = self.lock();
        progress.revision = progress.revision.max(tracked.revision);
        for (state, seen) in progress.steps.iter_mut().zip(&tracked.steps) {
            state.attempts = state.attempts.max(seen.attempts);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TaskProgress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}
