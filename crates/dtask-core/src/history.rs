//! What a task history keeps ([`TaskHistory`](crate::infra::TaskHistory)):
//! a row per task, one per step attempt, the conditions' snapshots, and an
//! append-only audit log; and how it is queried.
//!
//! The kernel writes these records as events happen, in batches, off the
//! hot path (see [`HostBuilder::history`](crate::HostBuilder::history)).
//! The saga state store stays the source of truth: the history is the
//! durable account of what ran, kept after the progress tracker forgot.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::progress::{TaskProgress, TaskStatus};
use crate::task::{ConditionSnapshot, StepHost};

/// One record for a [`TaskHistory`](crate::infra::TaskHistory) to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HistoryRecord {
    /// The task's row, whole: a newer [`revision`](TaskProgress::revision)
    /// replaces it, an older one is ignored.
    Task(TaskRecord),
    /// A step attempt (or compensation attempt) began: its row is created,
    /// or reset if that attempt number ran before (a worker died in it).
    AttemptStarted(StepAttempt),
    /// A step attempt ended: its row gets the end (and is created without
    /// a start when the start record was lost).
    AttemptEnded(StepAttempt),
    /// A condition was evaluated.
    Condition(ConditionRecord),
    /// An entry of the audit log; its [`id`](AuditEntry::id) makes writing
    /// it twice harmless.
    Audit(AuditEntry),
}

impl HistoryRecord {
    /// The task the record belongs to.
    pub fn task_id(&self) -> TaskId {
        match self {
            Self::Task(record) => record.progress.task_id,
            Self::AttemptStarted(attempt) | Self::AttemptEnded(attempt) => attempt.task_id,
            Self::Condition(condition) => condition.task_id,
            Self::Audit(entry) => entry.task_id,
        }
    }
}

/// The row of one task: its latest saved progress and what the progress
/// does not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// The latest saved progress: id, name, status, submitter, steps,
    /// created and ended times, error, trace id.
    pub progress: TaskProgress,
    /// The declared version of the task.
    pub version: u32,
    /// When the task must have ended.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// The response of a completed task as JSON, cut to
    /// [`RESPONSE_SUMMARY_LIMIT`] bytes (never kept for a task declaring
    /// `encrypt_messages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_summary: Option<String>,
}

/// The most bytes of a response kept in [`TaskRecord::response_summary`].
pub const RESPONSE_SUMMARY_LIMIT: usize = 2048;

impl TaskRecord {
    /// When the task's first step started.
    pub fn started_at(&self) -> Option<OffsetDateTime> {
        self.progress.steps.iter().filter_map(|s| s.started_at).min()
    }

    /// `text` cut to [`RESPONSE_SUMMARY_LIMIT`] bytes at a character
    /// boundary, with an ellipsis when cut.
    pub fn summarize(text: String) -> String {
        if text.len() <= RESPONSE_SUMMARY_LIMIT {
            return text;
        }
        let mut end = RESPONSE_SUMMARY_LIMIT - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    }
}

/// Whether an attempt ran the step or undid it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttemptKind {
    /// The step's own work.
    Run,
    /// Its compensation.
    Compensation,
}

impl AttemptKind {
    /// The camelCase name used on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Compensation => "compensation",
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttemptOutcome {
    /// It succeeded (for a compensation: the step was undone).
    Succeeded,
    /// It failed; another attempt may follow.
    Failed,
    /// It was stopped: the task was cancelled, or a race it ran in was won.
    Cancelled,
}

impl AttemptOutcome {
    /// The camelCase name used on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One attempt of one step: where and when it ran, how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepAttempt {
    /// The task.
    pub task_id: TaskId,
    /// The step's declared name.
    pub step: String,
    /// The step's declared order.
    pub order: u32,
    /// Where the step runs.
    pub host: StepHost,
    /// Run or compensation.
    pub kind: AttemptKind,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The process that ran it ([`HostBuilder::node_name`](crate::HostBuilder::node_name)).
    pub worker: String,
    /// When it began (`None` when only its end was recorded).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When it ended (`None` while it runs, or when its process died in it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,
    /// The error it failed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A condition's evaluation: the values it saw and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRecord {
    /// The task.
    pub task_id: TaskId,
    /// The step the condition guards.
    pub step: String,
    /// The expression, the values it read and whether it held.
    pub snapshot: ConditionSnapshot,
    /// When it was evaluated.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// One entry of the audit log: who did what to a task, when, and what
/// changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Unique; a UUIDv7, so entries of one process sort in the order they
    /// were made.
    pub id: Uuid,
    /// The task.
    pub task_id: TaskId,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who: the subject of the principal that asked (`submit`, `cancel`,
    /// `retry`), or `system:<node>` for the process that ran the change.
    pub actor: String,
    /// What: `submit`, `cancel`, `retry`, `deadLetter`, `historyGap`, or the
    /// type of the task's event (`stepStarted`, `compensating`,
    /// `completed`, ...).
    pub action: String,
    /// The step it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The status (of the step, if one, else of the task) before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The status after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The error, the reason or the attempt, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The task's trace id (W3C, 32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl AuditEntry {
    /// An entry of `action` on `task_id` by `actor`, now, with a fresh id.
    pub fn new(task_id: TaskId, actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            task_id,
            at: OffsetDateTime::now_utc(),
            actor: actor.into(),
            action: action.into(),
            step: None,
            before: None,
            after: None,
            detail: None,
            trace_id: None,
        }
    }
}

/// Where a page of [`TaskHistory::list`](crate::infra::TaskHistory::list)
/// ends: the next page starts after this task. Opaque on the wire (its
/// text form); tasks sort newest first by creation time, then by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    /// The creation time of the last task of the page.
    pub created_at: OffsetDateTime,
    /// Its id.
    pub task_id: TaskId,
}

impl HistoryCursor {
    /// The cursor after `record`.
    pub fn after(record: &TaskRecord) -> Self {
        Self {
            created_at: record.progress.created_at,
            task_id: record.progress.task_id,
        }
    }

    /// Whether `record` comes after the cursor, newest first.
    pub fn precedes(&self, record: &TaskRecord) -> bool {
        (record.progress.created_at, record.progress.task_id) < (self.created_at, self.task_id)
    }
}

impl fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            self.created_at.unix_timestamp_nanos(),
            self.task_id.as_uuid().simple()
        )
    }
}

impl FromStr for HistoryCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let malformed = || Error::invalid("cursor", format!("`{s}` is not a cursor this server gave"));
        let (nanos, id) = s.split_once('.').ok_or_else(malformed)?;
        let nanos: i128 = nanos.parse().map_err(|_| malformed())?;
        Ok(Self {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| malformed())?,
            task_id: Uuid::try_parse(id).map_err(|_| malformed())?.into(),
        })
    }
}

/// Which tasks [`TaskHistory::list`](crate::infra::TaskHistory::list)
/// returns: those matching every filter given, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only tasks of this declared name.
    pub task_name: Option<String>,
    /// Only tasks in this state.
    pub status: Option<TaskStatus>,
    /// Only tasks this subject submitted.
    pub submitter: Option<String>,
    /// Only tasks created at or after this time.
    pub created_after: Option<OffsetDateTime>,
    /// Only tasks created before this time.
    pub created_before: Option<OffsetDateTime>,
    /// The page after this cursor (the first page without one).
    pub cursor: Option<HistoryCursor>,
    /// At most this many.
    pub limit: usize,
}

impl Default for HistoryQuery {
    fn default() -> Self {
        Self {
            task_name: None,
            status: None,
            submitter: None,
            created_after: None,
            created_before: None,
            cursor: None,
            limit: 50,
        }
    }
}

impl HistoryQuery {
    /// Whether `record` passes the filters (not the cursor).
    pub fn matches(&self, record: &TaskRecord) -> bool {
        let progress = &record.progress;
        self.task_name.as_ref().is_none_or(|name| *name == progress.task_name)
            && self.status.is_none_or(|status| status == progress.status)
            && self
                .submitter
                .as_ref()
                .is_none_or(|who| progress.submitter.as_ref() == Some(who))
            && self.created_after.is_none_or(|after| progress.created_at >= after)
            && self.created_before.is_none_or(|before| progress.created_at < before)
    }
}

/// One page of [`TaskHistory::list`](crate::infra::TaskHistory::list).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// The tasks, newest first.
    pub items: Vec<TaskRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<HistoryCursor>,
}

impl HistoryPage {
    /// The page of `limit` items from `rows`, the matching tasks from the
    /// page's start on, newest first: a backend reads `limit + 1` of them,
    /// and one past the limit means another page follows.
    pub fn of(mut rows: Vec<TaskRecord>, limit: usize) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(HistoryCursor::after)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// Everything the history holds about one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskHistoryDetail {
    /// The task's row.
    pub task: TaskRecord,
    /// Its step attempts, in the order they started.
    pub attempts: Vec<StepAttempt>,
    /// Its conditions' evaluations, in order.
    pub conditions: Vec<ConditionRecord>,
    /// Its audit log, in order.
    pub audit: Vec<AuditEntry>,
}
