//! Orphan reconciliation: deletes the objects that tasks left behind in
//! their buckets when they failed, were cancelled or compensated, or are
//! not known at all.
//!
//! A task's objects are keyed `{task_id}/{step}/...` (see
//! [`upload_key`](crate::task::builtin::upload_key)). A compensation that
//! failed, a worker killed between a write and its saga snapshot, or a
//! store that lost its tracker's records leaves such objects with no task
//! to own them. A [`Reconciler`] lists every object of the configured
//! buckets, groups them by the task id their key starts with, and judges
//! each task:
//!
//! | the task | its objects |
//! |---|---|
//! | pending, running, queued, compensating (live) | never touched |
//! | completed | kept: they are its results; with a retention ([`Reconciler::with_completed_retention`]), deleted once older than it |
//! | failed, compensated, cancelled, compensation failed | deleted once older than the grace period |
//! | unknown: no progress and no saga state | deleted once older than the grace period |
//! | progress or saga state that cannot be read | kept |
//! | a key that does not start with a task id | kept, counted as foreign |
//!
//! The progress tracker is asked first; a task it does not know (the Redis
//! tracker forgets ended tasks after a day) is judged by the status inside
//! its last saga snapshot. Encoded snapshots are read whatever the task
//! type; in-memory ones only for the task types registered with
//! [`Reconciler::with_task`].
//!
//! # Races
//!
//! An object's age is measured from its `last_modified`. The grace period
//! ([`DEFAULT_GRACE`], one hour) covers a task that writes objects before
//! its progress is visible to this process, and clock skew between the
//! store and this process. Right before deleting a task's objects the
//! task is judged again, so one that came to life (or completed) since
//! the listing keeps them.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use dtask_core::memory::{MemoryObjectStore, MemoryProgressTracker, MemoryStateStore};
//! use dtask_core::reconcile::{ReconcileMode, Reconciler};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> dtask_core::Result<()> {
//! let reconciler = Reconciler::new(
//!     Arc::new(MemoryObjectStore::new()),
//!     Arc::new(MemoryProgressTracker::new()),
//!     Arc::new(MemoryStateStore::new()),
//! )
//! .with_buckets(["incoming-files", "processed-files"])
//! .with_grace(Duration::from_secs(3600));
//! let report = reconciler.run(ReconcileMode::DryRun).await?;
//! assert!(report.orphans.is_empty());
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

mod periodic;
mod report;
mod standing;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::codec::KeyRing;
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::infra::{Infrastructure, ObjectMeta, ObjectStore, ProgressTracker, SagaStateStore};
use crate::task::Task;

pub use periodic::spawn_periodic;
pub use report::{FailedDeletion, KeptCounts, Orphan, ReconcileReport};
pub use standing::OrphanReason;

use standing::{KeepReason, Standing, StateReader};

/// The default grace period: objects younger than this are never deleted.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60 * 60);

/// Whether [`Reconciler::run`] deletes or only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileMode {
    /// Lists what would be deleted; deletes nothing.
    DryRun,
    /// Deletes the orphans.
    Delete,
}

/// Finds and deletes the objects of ended and unknown tasks. See the
/// [module docs](self).
///
/// Cheap to clone: the services are shared.
#[derive(Debug, Clone)]
pub struct Reconciler {
    storage: Arc<dyn ObjectStore>,
    progress: Arc<dyn ProgressTracker>,
    state: Arc<dyn SagaStateStore>,
    buckets: Vec<String>,
    grace: Duration,
    /// How long completed tasks' objects are kept; `None`: for ever.
    completed_retention: Option<Duration>,
    readers: Vec<StateReader>,
    keys: Option<Arc<KeyRing>>,
}

impl Reconciler {
    /// A reconciler over these services, with no bucket yet and the
    /// [`DEFAULT_GRACE`].
    pub fn new(
        storage: Arc<dyn ObjectStore>,
        progress: Arc<dyn ProgressTracker>,
        state: Arc<dyn SagaStateStore>,
    ) -> Self {
        Self {
            storage,
            progress,
            state,
            buckets: Vec::new(),
            grace: DEFAULT_GRACE,
            completed_retention: None,
            readers: Vec::new(),
            keys: None,
        }
    }

    /// A reconciler over the object store, progress tracker and saga state
    /// store of `infrastructure`.
    pub fn from_infrastructure(infrastructure: &Infrastructure) -> Self {
        Self::new(
            Arc::clone(&infrastructure.storage),
            Arc::clone(&infrastructure.progress),
            Arc::clone(&infrastructure.state),
        )
    }

    /// Adds buckets to reconcile (each once).
    #[must_use]
    pub fn with_buckets<I, S>(mut self, buckets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for bucket in buckets {
            let bucket = bucket.into();
            if !self.buckets.contains(&bucket) {
                self.buckets.push(bucket);
            }
        }
        self
    }

    /// Adds the buckets of `T` ([`TaskDefinition::buckets`](crate::TaskDefinition::buckets))
    /// and lets the reconciler read `T`'s in-memory saga snapshots (encoded
    /// ones are read without it).
    #[must_use]
    pub fn with_task<T: Task>(mut self) -> Self {
        self.readers.push(standing::read_state_of::<T>);
        self.with_buckets(T::definition().buckets())
    }

    /// Opens sealed saga states with `keys` (the hosts' key ring): without
    /// it, a task known only by a sealed state is judged unreadable and its
    /// objects are kept.
    #[must_use]
    pub fn with_key_ring(mut self, keys: KeyRing) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// Objects younger than `grace` are never deleted.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The buckets it reconciles.
    pub fn buckets(&self) -> &[String] {
        &self.buckets
    }

    /// Deletes the objects of completed tasks (their uploads and results)
    /// once older than `retention`; by default they are kept for ever.
    #[must_use]
    pub fn with_completed_retention(mut self, retention: Duration) -> Self {
        self.completed_retention = Some(retention);
        self
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Lists every object of the buckets, judges each task, and deletes
    /// (or, in a dry run, only reports) the orphans. Deletions that fail
    /// are reported in [`ReconcileReport::failed`] and the run goes on.
    ///
    /// # Errors
    /// [`Error::Invalid`] when no bucket is configured; a listing, progress
    /// or saga state lookup that fails ends the run with the backend's
    /// error (what was deleted before stays deleted).
    ///
    /// # Cancel safety
    /// Dropping the future stops between two calls to the services; the
    /// objects deleted so far stay deleted, and the next run finds the rest.
    pub async fn run(&self, mode: ReconcileMode) -> Result<ReconcileReport> {
        if self.buckets.is_empty() {
            return Err(Error::invalid("reconciler", "no bucket to reconcile"));
        }
        let now = OffsetDateTime::now_utc();
        let mut report = ReconcileReport::new(mode);
        let mut judged: HashMap<TaskId, Standing> = HashMap::new();
        let mut candidates: BTreeMap<TaskId, Vec<ObjectMeta>> = BTreeMap::new();
        for bucket in &self.buckets {
            for object in self.storage.list(bucket, "").await? {
                let Some(task_id) = task_of(&object.key) else {
                    report.kept.foreign += 1;
                    continue;
                };
                let standing = match judged.get(&task_id) {
                    Some(standing) => *standing,
                    None => {
                        let standing = self.judge(task_id).await?;
                        judged.insert(task_id, standing);
                        standing
                    }
                };
                match standing {
                    Standing::Keep(KeepReason::Completed) if self.is_expired(&object, now) => {
                        candidates.entry(task_id).or_default().push(object);
                    }
                    Standing::Keep(reason) => report.kept.add(reason, 1),
                    Standing::Orphaned(_) if self.is_young(&object, now) => report.kept.too_young += 1,
                    Standing::Orphaned(_) => candidates.entry(task_id).or_default().push(object),
                }
            }
        }
        for (task_id, objects) in candidates {
            self.settle(task_id, objects, judged[&task_id], &mut report).await?;
        }
        Ok(report)
    }

    /// Deletes (or, in a dry run, reports) one task's candidate objects,
    /// after judging the task again in Delete mode.
    async fn settle(
        &self,
        task_id: TaskId,
        objects: Vec<ObjectMeta>,
        first: Standing,
        report: &mut ReconcileReport,
    ) -> Result<()> {
        let standing = match report.mode {
            ReconcileMode::DryRun => first,
            ReconcileMode::Delete => self.judge(task_id).await?,
        };
        let reason = match standing {
            Standing::Orphaned(reason) => reason,
            // Only objects past the retention were listed for it.
            Standing::Keep(KeepReason::Completed) if self.completed_retention.is_some() => OrphanReason::Expired,
            Standing::Keep(kept) => {
                tracing::info!(%task_id, objects = objects.len(), ?kept, "the task changed since the listing: keeping its objects");
                report.kept.add(kept, objects.len());
                return Ok(());
            }
        };
        for object in objects {
            let orphan = Orphan::new(object, task_id, reason);
            if report.mode == ReconcileMode::Delete {
                if let Err(error) = self.storage.delete(&orphan.bucket, &orphan.key).await {
                    tracing::warn!(bucket = %orphan.bucket, key = %orphan.key, %error, "deleting an orphan failed");
                    report.failed.push(FailedDeletion {
                        orphan,
                        error: error.to_string(),
                    });
                    continue;
                }
                tracing::debug!(bucket = %orphan.bucket, key = %orphan.key, %task_id, %reason, "deleted an orphan");
            }
            report.orphans.push(orphan);
        }
        Ok(())
    }

    async fn judge(&self, task_id: TaskId) -> Result<Standing> {
        standing::judge(
            task_id,
            &*self.progress,
            &*self.state,
            &self.readers,
            self.keys.as_deref(),
        )
        .await
    }

    /// Whether `object`, of a completed task, is older than the retention
    /// of completed tasks' objects.
    fn is_expired(&self, object: &ObjectMeta, now: OffsetDateTime) -> bool {
        self.completed_retention.is_some_and(|retention| {
            let age = now - object.last_modified;
            !age.is_negative() && age.unsigned_abs() >= retention
        })
    }

    /// Whether `object` was written less than the grace period before
    /// `now` (or after it: the store's clock is ahead).
    fn is_young(&self, object: &ObjectMeta, now: OffsetDateTime) -> bool {
        let age = now - object.last_modified;
        age.is_negative() || age.unsigned_abs() < self.grace
    }
}

/// The task a key belongs to: its first segment, when that is a task id
/// written the way dtask writes them (hyphenated, lower case) and more
/// follows.
fn task_of(key: &str) -> Option<TaskId> {
    let (first, rest) = key.split_once('/')?;
    if rest.is_empty() {
        return None;
    }
    let task_id: TaskId = first.parse().ok()?;
    (task_id.to_string() == first).then_some(task_id)
}

#[cfg(test)]
mod tests {
    use super::task_of;
    use crate::id::TaskId;

    #[test]
    fn only_keys_under_a_canonical_task_id_belong_to_a_task() {
        let id = TaskId::new();
        assert_eq!(task_of(&format!("{id}/UploadZip/0000-a.zip")), Some(id));
        assert_eq!(task_of(&format!("{id}")), None, "a bare id is no task's object");
        assert_eq!(task_of(&format!("{id}/")), None);
        assert_eq!(task_of(&format!("{}/x", id.to_string().to_uppercase())), None);
        assert_eq!(task_of(&format!("{}/x", id.as_uuid().simple())), None);
        assert_eq!(task_of("backups/2024/x.tar"), None);
        assert_eq!(task_of("readme.txt"), None);
    }
}
