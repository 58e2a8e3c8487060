//! [`MemoryTaskHistory`]: the task history in memory, for InProcess hosts.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::lock_mutex;
use crate::error::Result;
use crate::history::{
    AttemptKind, AuditEntry, ConditionRecord, HistoryPage, HistoryQuery, HistoryRecord, StepAttempt, TaskHistoryDetail,
    TaskRecord,
};
use crate::id::TaskId;
use crate::infra::TaskHistory;

/// A [`TaskHistory`] in memory. Besides the time-based
/// [`purge`](TaskHistory::purge), it keeps at most the newest
/// [`DEFAULT_RETENTION`](Self::DEFAULT_RETENTION) ended tasks
/// ([`with_retention`](Self::with_retention) to change it), so a
/// long-running InProcess server does not grow without bound. Records of a
/// task whose row it does not keep yet are kept for when the row comes.
pub struct MemoryTaskHistory {
    inner: Mutex<Inner>,
    retention: usize,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<TaskId, Kept>,
    /// Every task with a row, by (creation time, id): the list's order.
    by_created: BTreeSet<(OffsetDateTime, TaskId)>,
    /// Tasks that ended, in the order they did.
    ended: VecDeque<TaskId>,
}

#[derive(Default)]
struct Kept {
    task: Option<TaskRecord>,
    attempts: Vec<StepAttempt>,
    conditions: Vec<ConditionRecord>,
    audit: Vec<AuditEntry>,
    audit_ids: HashSet<Uuid>,
}

impl Default for MemoryTaskHistory {
    fn default() -> Self {
        Self::with_retention(Self::DEFAULT_RETENTION)
    }
}

impl MemoryTaskHistory {
    /// How many ended tasks [`new`](Self::new) keeps.
    pub const DEFAULT_RETENTION: usize = 10_000;

    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty history keeping the newest `retention` ended tasks.
    pub fn with_retention(retention: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            retention,
        }
    }
}

impl fmt::Debug for MemoryTaskHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = lock_mutex(&self.inner);
        f.debug_struct("MemoryTaskHistory")
            .field("tasks", &inner.by_created.len())
            .field("retention", &self.retention)
            .finish()
    }
}

impl Inner {
    fn keep(&mut self, record: &HistoryRecord) {
        let kept = self.tasks.entry(record.task_id()).or_default();
        match record {
            HistoryRecord::Task(task) => {
                let progress = &task.progress;
                if let Some(old) = &kept.task {
                    if old.progress.revision >= progress.revision {
                        return;
                    }
                    self.by_created.remove(&(old.progress.created_at, old.progress.task_id));
                }
                let ended_now = progress.is_terminal() && !kept.task.as_ref().is_some_and(|t| t.progress.is_terminal());
                self.by_created.insert((progress.created_at, progress.task_id));
                kept.task = Some(task.clone());
                if ended_now {
                    self.ended.push_back(progress.task_id);
                }
            }
            HistoryRecord::AttemptStarted(attempt) => match find_attempt(&mut kept.attempts, attempt) {
                Some(row) => *row = attempt.clone(),
                None => kept.attempts.push(attempt.clone()),
            },
            HistoryRecord::AttemptEnded(attempt) => match find_attempt(&mut kept.attempts, attempt) {
                Some(row) => {
                    row.ended_at = attempt.ended_at;
                    row.outcome = attempt.outcome;
                    row.error.clone_from(&attempt.error);
                }
                None => kept.attempts.push(attempt.clone()),
            },
            HistoryRecord::Condition(condition) => {
                let seen = |c: &ConditionRecord| c.step == condition.step && c.at == condition.at;
                if !kept.conditions.iter().any(seen) {
                    kept.conditions.push(condition.clone());
                }
            }
            HistoryRecord::Audit(entry) => {
                if kept.audit_ids.insert(entry.id) {
                    kept.audit.push(entry.clone());
                }
            }
        }
    }

    fn remove(&mut self, task_id: TaskId) {
        if let Some(kept) = self.tasks.remove(&task_id)
            && let Some(task) = kept.task
        {
            self.by_created.remove(&(task.progress.created_at, task_id));
        }
    }
}

fn find_attempt<'a>(rows: &'a mut [StepAttempt], attempt: &StepAttempt) -> Option<&'a mut StepAttempt> {
    let key = |a: &StepAttempt| -> (String, AttemptKind, u32) { (a.step.clone(), a.kind, a.attempt) };
    let wanted = key(attempt);
    rows.iter_mut().find(|row| key(row) == wanted)
}

#[async_trait]
impl TaskHistory for MemoryTaskHistory {
    async fn write(&self, batch: &[HistoryRecord]) -> Result<()> {
        let mut inner = lock_mutex(&self.inner);
        for record in batch {
            inner.keep(record);
        }
        while inner.ended.len() > self.retention {
            let Some(oldest) = inner.ended.pop_front() else { break };
            inner.remove(oldest);
        }
        Ok(())
    }

    async fn list(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        let inner = lock_mutex(&self.inner);
        let rows = (inner.by_created.iter().rev())
            .filter_map(|(_, task_id)| inner.tasks.get(task_id).and_then(|kept| kept.task.as_ref()))
            .filter(|record| query.cursor.is_none_or(|cursor| cursor.precedes(record)) && query.matches(record))
            .take(query.limit.saturating_add(1))
            .cloned()
            .collect();
        Ok(HistoryPage::of(rows, query.limit))
    }

    async fn task(&self, task_id: TaskId) -> Result<Option<TaskHistoryDetail>> {
        let inner = lock_mutex(&self.inner);
        let Some(kept) = inner.tasks.get(&task_id) else {
            return Ok(None);
        };
        let Some(task) = kept.task.clone() else {
            return Ok(None);
        };
        // In time order, then in the order written; attempts without a
        // recorded start last.
        let mut attempts = kept.attempts.clone();
        attempts.sort_by_key(|a| (a.started_at.is_none(), a.started_at));
        let mut conditions = kept.conditions.clone();
        conditions.sort_by_key(|c| c.at);
        let mut audit = kept.audit.clone();
        audit.sort_by_key(|e| e.at);
        Ok(Some(TaskHistoryDetail {
            task,
            attempts,
            conditions,
            audit,
        }))
    }

    async fn purge(&self, ended_before: OffsetDateTime, limit: usize) -> Result<usize> {
        let mut inner = lock_mutex(&self.inner);
        let expired: HashSet<TaskId> = inner
            .tasks
            .iter()
            .filter(|(_, kept)| {
                kept.task
                    .as_ref()
                    .and_then(|t| t.progress.completed_at)
                    .is_some_and(|ended| ended < ended_before)
            })
            .map(|(id, _)| *id)
            .take(limit)
            .collect();
        for task_id in &expired {
            inner.remove(*task_id);
        }
        inner.ended.retain(|id| !expired.contains(id));
        Ok(expired.len())
    }
}
