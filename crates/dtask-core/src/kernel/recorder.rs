//! The recorder: the one place a task's progress changes. Every change is
//! an event, folded into the progress snapshot, told to the host's
//! listeners and written to the progress tracker.
//!
//! A *settlement* (a change the saga state must hold before anyone sees it:
//! a step completed, skipped or compensated, the task ended) is begun with
//! [`Recorder::begin_settlement`] and ended with [`Recorder::settled`] once
//! the state is saved. Until then every write is held back, so progress
//! never shows a state that is not saved; a run whose save failed is
//! [halted](Recorder::halt) and writes nothing more.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use time::OffsetDateTime;

use super::Runtime;
use super::history::{Before, RunHistory};
use crate::event::{EventKind, TaskEvent};
use crate::history::{AuditEntry, HistoryRecord};
use crate::id::TaskId;
use crate::infra::ProgressWrite;
use crate::progress::TaskProgress;

pub(crate) struct Recorder<'r> {
    rt: &'r Runtime,
    task_id: TaskId,
    progress: Mutex<TaskProgress>,
    /// The newest revision written to the tracker: a folded change is
    /// written by the next write, or by [`Recorder::flush`].
    written: AtomicU64,
    /// Settlements begun whose state is not saved yet: writes wait.
    unsaved: AtomicU32,
    /// Set once a save failed for good: nothing is written any more.
    halted: AtomicBool,
    /// What the run records in the host's history, when it has one.
    history: Option<RunHistory>,
    /// Whether the task's end counts in the metrics (not a member run's).
    counted: bool,
}

impl<'r> Recorder<'r> {
    pub(crate) fn new(rt: &'r Runtime, progress: TaskProgress, history: Option<RunHistory>) -> Self {
        Self {
            history,
            rt,
            task_id: progress.task_id,
            written: AtomicU64::new(progress.revision),
            progress: Mutex::new(progress),
            unsaved: AtomicU32::new(0),
            halted: AtomicBool::new(false),
            counted: true,
        }
    }

    /// The recorder, whose run's end is not counted in the metrics.
    pub(crate) fn uncounted(mut self) -> Self {
        self.counted = false;
        self
    }

    /// Folds `kind` into the snapshot and tells the listeners.
    fn apply(&self, kind: EventKind) {
        let event = TaskEvent {
            task_id: self.task_id,
            at: OffsetDateTime::now_utc(),
            kind,
        };
        let mut progress = self.lock();
        let was_terminal = progress.is_terminal();
        match (&self.history, &self.rt.history) {
            (Some(run), Some(writer)) => {
                let before = Before::of(&progress, &event.kind);
                progress.apply(&event);
                let records = run.records(&progress, &event, before);
                self.count(&progress, &event, was_terminal);
                drop(progress);
                for record in records {
                    writer.push(record);
                }
            }
            _ => {
                progress.apply(&event);
                self.count(&progress, &event, was_terminal);
            }
        }
        self.rt.publish_event(&event);
    }

    /// Counts the end of a task that `event` just ended.
    fn count(&self, progress: &TaskProgress, event: &TaskEvent, was_terminal: bool) {
        if was_terminal || !progress.is_terminal() || !self.counted {
            return;
        }
        if let Some(metrics) = self.rt.metrics.task(&progress.task_name) {
            let took = (event.at - progress.created_at).try_into().unwrap_or_default();
            metrics.ended(progress.status, took);
        }
    }

    /// Records a task just submitted in the history: its row, and who
    /// submitted it (its submitter, or this process).
    pub(crate) fn keep_submitted(&self) {
        let rt = self.rt;
        let (Some(run), Some(writer)) = (&self.history, &rt.history) else {
            return;
        };
        let progress = self.snapshot();
        let actor = progress.submitter.clone().unwrap_or_else(|| rt.system_actor());
        let mut entry = AuditEntry::new(self.task_id, actor, "submit");
        entry.at = progress.created_at;
        entry.after = Some(progress.status.as_str().to_owned());
        entry.trace_id.clone_from(&progress.trace_id);
        writer.push(HistoryRecord::Task(run.row(progress)));
        writer.push(HistoryRecord::Audit(entry));
    }

    /// Keeps the task's response for its history row.
    pub(crate) fn set_response(&self, response: &impl serde::Serialize) {
        if let Some(run) = &self.history {
            run.set_response(response);
        }
    }

    /// Folds `kind` into the snapshot and tells the listeners, leaving the
    /// tracker write to the next event, which follows at once (a step
    /// completed and the next one started: one write instead of two), or
    /// to [`Recorder::flush`].
    pub(crate) fn fold(&self, kind: EventKind) {
        self.apply(kind);
    }

    /// Folds `kind`, a change the saga state must hold before it shows:
    /// every write waits until [`Recorder::settled`].
    pub(crate) fn begin_settlement(&self, kind: EventKind) {
        self.unsaved.fetch_add(1, Ordering::AcqRel);
        self.apply(kind);
    }

    /// The state holding a settlement is saved: writes may go on, and with
    /// `write` the snapshot is written now (otherwise by the next event,
    /// which follows at once).
    pub(crate) async fn settled(&self, write: bool) {
        self.unsaved.fetch_sub(1, Ordering::AcqRel);
        if write {
            self.flush().await;
        }
    }

    /// The snapshot a settlement just begun saves and shows in one atomic
    /// step ([`StateWithProgress`](crate::infra::StateWithProgress)), when
    /// it is the only one waiting for its save (others would have their
    /// changes shown before they are saved) and the run has not halted.
    pub(crate) fn sole_settlement(&self) -> Option<TaskProgress> {
        let sole = !self.halted.load(Ordering::Acquire) && self.unsaved.load(Ordering::Acquire) == 1;
        sole.then(|| self.snapshot())
    }

    /// The settlement begun with [`Recorder::sole_settlement`] is saved
    /// and `shown` written with it: writes may go on, and changes made
    /// since are written now.
    pub(crate) async fn settled_showing(&self, shown: &TaskProgress, written: ProgressWrite) {
        self.unsaved.fetch_sub(1, Ordering::AcqRel);
        if written == ProgressWrite::UnknownTask {
            // As a failed tracker write: the state is saved, the next write
            // carries every change.
            tracing::warn!(task_id = %self.task_id, "could not write progress: the tracker does not know the task");
        }
        self.written.fetch_max(shown.revision, Ordering::AcqRel);
        self.keep_row(shown.clone());
        self.flush().await;
    }

    /// Stops every write for good: the run could not save its state.
    pub(crate) fn halt(&self) {
        self.halted.store(true, Ordering::Release);
    }

    /// Writes the snapshot if it holds changes not written yet.
    pub(crate) async fn flush(&self) {
        if self.lock().revision > self.written.load(Ordering::Acquire) {
            self.write().await;
        }
    }

    /// Records `kind`: folds it and writes the snapshot to the tracker.
    pub(crate) async fn record(&self, kind: EventKind) {
        self.apply(kind);
        self.write().await;
    }

    /// Writes the snapshot to the tracker, unless a settlement waits for
    /// its save (its own write carries this change then) or the run halted.
    /// A tracker failure is logged, not fatal: the saga's own record is the
    /// state snapshot, and the next write carries every change.
    async fn write(&self) {
        let Some(snapshot) = self.to_write() else {
            return;
        };
        let tracker = &self.rt.infra.progress;
        let result = if snapshot.is_terminal() {
            tracker.complete(&snapshot).await
        } else {
            tracker.update(&snapshot).await
        };
        if let Err(error) = result {
            tracing::warn!(task_id = %self.task_id, %error, "could not write progress");
        }
    }

    /// The state holding a settlement is saved (as [`Recorder::settled`]),
    /// and the snapshot to write now, which the caller writes to the
    /// tracker together with other runs' (`Host::submit_many`); `None`
    /// when there is nothing to write.
    pub(crate) fn settled_for_batch(&self) -> Option<TaskProgress> {
        self.unsaved.fetch_sub(1, Ordering::AcqRel);
        self.to_write()
    }

    /// The snapshot a write sends now, counted as written (and its history
    /// row pushed); `None` while a settlement waits for its save or once
    /// the run halted.
    fn to_write(&self) -> Option<TaskProgress> {
        if self.halted.load(Ordering::Acquire) || self.unsaved.load(Ordering::Acquire) > 0 {
            return None;
        }
        let snapshot = self.snapshot();
        self.written.fetch_max(snapshot.revision, Ordering::AcqRel);
        self.keep_row(snapshot.clone());
        Some(snapshot)
    }

    /// Pushes the task's history row as `written` to the tracker.
    fn keep_row(&self, written: TaskProgress) {
        if let (Some(run), Some(writer)) = (&self.history, &self.rt.history) {
            // The row shows saved progress only, as the tracker does.
            writer.push(HistoryRecord::Task(run.row(written)));
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
