//! What one reconciliation found: the orphans it deleted (or would delete)
//! and what it kept.

use std::fmt;

use time::OffsetDateTime;

use super::ReconcileMode;
use super::standing::{KeepReason, OrphanReason};
use crate::id::TaskId;
use crate::infra::ObjectMeta;

/// One object of an ended or unknown task, old enough to be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The bucket holding it.
    pub bucket: String,
    /// Its key (`{task_id}/{step}/...`).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: OffsetDateTime,
    /// The task its key names.
    pub task_id: TaskId,
    /// Why it is deleted.
    pub reason: OrphanReason,
}

impl Orphan {
    pub(super) fn new(object: ObjectMeta, task_id: TaskId, reason: OrphanReason) -> Self {
        Self {
            bucket: object.bucket,
            key: object.key,
            size: object.size,
            last_modified: object.last_modified,
            task_id,
            reason,
        }
    }
}

/// An orphan whose deletion failed, and the store's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDeletion {
    /// The object.
    pub orphan: Orphan,
    /// The store's error, as text.
    pub error: String,
}

/// How many listed objects were kept, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeptCounts {
    /// Objects of live tasks (pending, running, queued, compensating).
    pub live: usize,
    /// Objects of completed tasks: their results.
    pub completed: usize,
    /// Objects of ended or unknown tasks written less than the grace period
    /// ago.
    pub too_young: usize,
    /// Objects whose key does not start with a task id.
    pub foreign: usize,
    /// Objects of tasks whose progress or saga state exists but could not
    /// be read.
    pub unreadable: usize,
}

impl KeptCounts {
    /// Every kept object.
    pub fn total(&self) -> usize {
        self.live + self.completed + self.too_young + self.foreign + self.unreadable
    }

    pub(super) fn add(&mut self, reason: KeepReason, objects: usize) {
        let count = match reason {
            KeepReason::Live => &mut self.live,
            KeepReason::Completed => &mut self.completed,
            KeepReason::Unreadable => &mut self.unreadable,
        };
        *count += objects;
    }
}

/// The outcome of [`Reconciler::run`](super::Reconciler::run).
///
/// Its `Display` is one line per orphan (`deleted` or `would delete`, the
/// location, the task and the reason), one per failed deletion, then a
/// summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Whether objects were deleted or only listed.
    pub mode: ReconcileMode,
    /// The objects deleted (in [`ReconcileMode::Delete`]) or that would be
    /// (in [`ReconcileMode::DryRun`]), grouped by task, in key order.
    pub orphans: Vec<Orphan>,
    /// Orphans whose deletion failed (never in a dry run).
    pub failed: Vec<FailedDeletion>,
    /// The objects kept.
    pub kept: KeptCounts,
}

impl ReconcileReport {
    pub(super) fn new(mode: ReconcileMode) -> Self {
        Self {
            mode,
            orphans: Vec::new(),
            failed: Vec::new(),
            kept: KeptCounts::default(),
        }
    }

    /// The bytes the orphans hold.
    pub fn orphan_bytes(&self) -> u64 {
        self.orphans.iter().map(|o| o.size).sum()
    }

    /// How many distinct tasks the orphans belong to.
    pub fn orphan_tasks(&self) -> usize {
        let mut tasks: Vec<TaskId> = self.orphans.iter().map(|o| o.task_id).collect();
        tasks.sort_unstable();
        tasks.dedup();
        tasks.len()
    }
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.mode {
            ReconcileMode::DryRun => "would delete",
            ReconcileMode::Delete => "deleted",
        };
        for orphan in &self.orphans {
            writeln!(f, "{verb} {}", Located(orphan))?;
        }
        for failure in &self.failed {
            writeln!(f, "failed to delete {}: {}", Located(&failure.orphan), failure.error)?;
        }
        let kept = &self.kept;
        let (label, failed) = match self.mode {
            ReconcileMode::DryRun => ("dry run", String::new()),
            ReconcileMode::Delete => ("reconciled", format!(", {} failed", self.failed.len())),
        };
        write!(
            f,
            "{label}: {verb} {} objects ({} bytes) of {} tasks{failed}; kept {}: {} live, {} completed, \
             {} too young, {} foreign keys, {} unreadable",
            self.orphans.len(),
            self.orphan_bytes(),
            self.orphan_tasks(),
            kept.total(),
            kept.live,
            kept.completed,
            kept.too_young,
            kept.foreign,
            kept.unreadable,
        )
    }
}

/// An orphan as `bucket/key (task ID, reason, N bytes)`.
struct Located<'a>(&'a Orphan);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let orphan = self.0;
        write!(
            f,
            "{}/{} (task {}, {}, {} bytes)",
            orphan.bucket, orphan.key, orphan.task_id, orphan.reason, orphan.size
        )
    }
}
