//! Conformance checks for [`TaskHistory`] backends.
//!
//! Every check names its tasks with a fresh task name and filters by it, so
//! checks run side by side against one shared database. Times are whole
//! microseconds, the precision of SQL timestamps (the kernel's are too).

use time::OffsetDateTime;
use time::macros::datetime;

use crate::Format;
use crate::history::{
    AttemptKind, AttemptOutcome, AuditEntry, ConditionRecord, HistoryCursor, HistoryQuery, HistoryRecord, StepAttempt,
    TaskRecord,
};
use crate::id::TaskId;
use crate::infra::TaskHistory;
use crate::progress::{ObservedValue, TaskProgress, TaskStatus};
use crate::task::{ConditionSnapshot, Mode, StepHost, TaskDefinition};

use super::unique_name;

/// Runs every check.
pub async fn run_all(history: &dyn TaskHistory) {
    rows_keep_the_newest_revision(history).await;
    attempts_start_then_end(history).await;
    conditions_and_audit_in_order(history).await;
    list_filters_and_pages(history).await;
    purge_removes_expired_ended_tasks(history).await;
}

static DEFINITION: TaskDefinition = TaskDefinition {
    name: "HistoryConformance",
    queue: "history",
    max_retries: 0,
    timeout: std::time::Duration::from_secs(60),
    mode: Mode::Distributed,
    format: Format::Json,
    cancellable: true,
    required_roles: &[],
    encrypt_messages: false,
    version: 3,
    steps: &[],
    groups: &[],
    depends_on: &[],
};

/// A row of a task named `name`, created at `created`, in `status`.
fn row(name: &str, created: OffsetDateTime, status: TaskStatus, submitter: Option<&str>) -> TaskRecord {
    let mut progress = TaskProgress::new(TaskId::new(), &DEFINITION, created);
    progress.task_name = name.to_owned();
    progress.submitter = submitter.map(str::to_owned);
    progress.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned());
    progress.status = status;
    progress.revision = 1;
    if status.is_terminal() {
        progress.is_complete = true;
        progress.completed_at = Some(created + time::Duration::seconds(5));
    }
    TaskRecord {
        progress,
        version: DEFINITION.version,
        deadline: Some(created + time::Duration::hours(1)),
        response_summary: status.is_terminal().then(|| r#"{"archive":"a.zip"}"#.to_owned()),
    }
}

/// Now, to the microsecond.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .expect("in range")
}

async fn write(history: &dyn TaskHistory, batch: &[HistoryRecord]) {
    history.write(batch).await.expect("the history writes the batch");
}

/// A row is replaced by a newer revision and never by an older one; it
/// reads back whole.
pub async fn rows_keep_the_newest_revision(history: &dyn TaskHistory) {
    let name = unique_name("Rows");
    let first = row(&name, now(), TaskStatus::Running, Some("alice"));
    let task_id = first.progress.task_id;
    let mut second = first.clone();
    second.progress.revision = 2;
    second.progress.status = TaskStatus::Completed;
    second.progress.completed_at = Some(now());
    second.response_summary = Some("{}".into());
    write(history, &[HistoryRecord::Task(first.clone())]).await;
    write(history, &[HistoryRecord::Task(second.clone())]).await;
    write(history, &[HistoryRecord::Task(first)]).await;
    let detail = history.task(task_id).await.unwrap().expect("the row is kept");
    assert_eq!(detail.task, second, "the newest revision stays, read back whole");
    assert!(
        history.task(TaskId::new()).await.unwrap().is_none(),
        "an unknown task has no row"
    );
    let page = history.list(&query(&name)).await.unwrap();
    assert_eq!(page.items, vec![second], "one row per task");
    assert_eq!(page.next_cursor, None);
}

fn query(name: &str) -> HistoryQuery {
    HistoryQuery {
        task_name: Some(name.to_owned()),
        ..HistoryQuery::default()
    }
}

fn attempt(task_id: TaskId, step: &str, kind: AttemptKind, attempt: u32) -> StepAttempt {
    StepAttempt {
        task_id,
        step: step.to_owned(),
        order: 2,
        host: StepHost::Worker,
        kind,
        attempt,
        worker: "worker-a:42".into(),
        started_at: Some(now()),
        ended_at: None,
        outcome: None,
        error: None,
    }
}

fn ended(mut attempt: StepAttempt, outcome: AttemptOutcome, error: Option<&str>) -> StepAttempt {
    attempt.started_at = None;
    attempt.ended_at = Some(now());
    attempt.outcome = Some(outcome);
    attempt.error = error.map(str::to_owned);
    attempt
}

/// An attempt's end completes the row its start made (kind and number
/// tell rows apart); an end whose start was lost makes a row of its own; a
/// start of an attempt number seen before resets its row.
pub async fn attempts_start_then_end(history: &dyn TaskHistory) {
    let name = unique_name("Attempts");
    let task = row(&name, now(), TaskStatus::Compensating, None);
    let task_id = task.progress.task_id;
    let run1 = attempt(task_id, "Work", AttemptKind::Run, 1);
    let run2 = attempt(task_id, "Work", AttemptKind::Run, 2);
    let undo1 = attempt(task_id, "Work", AttemptKind::Compensation, 1);
    let lost_start = ended(
        attempt(task_id, "Other", AttemptKind::Run, 1),
        AttemptOutcome::Cancelled,
        None,
    );
    let run1_end = ended(run1.clone(), AttemptOutcome::Failed, Some("boom"));
    write(
        history,
        &[
            HistoryRecord::Task(task),
            HistoryRecord::AttemptStarted(run1.clone()),
            HistoryRecord::AttemptEnded(run1_end.clone()),
            HistoryRecord::AttemptStarted(run2.clone()),
        ],
    )
    .await;
    let run2_end = ended(run2.clone(), AttemptOutcome::Succeeded, None);
    write(
        history,
        &[
            HistoryRecord::AttemptEnded(run2_end.clone()),
            HistoryRecord::AttemptStarted(undo1.clone()),
            HistoryRecord::AttemptEnded(lost_start.clone()),
        ],
    )
    .await;
    let attempts = history.task(task_id).await.unwrap().expect("kept").attempts;
    let expected = vec![
        StepAttempt {
            started_at: run1.started_at,
            ..run1_end.clone()
        },
        StepAttempt {
            started_at: run2.started_at,
            ..run2_end.clone()
        },
        undo1.clone(),
        lost_start,
    ];
    assert_eq!(attempts.len(), 4, "one row per step, kind and attempt: {attempts:#?}");
    for (got, want) in attempts.iter().zip(&expected) {
        assert_eq!(
            (
                &got.step,
                got.kind,
                got.attempt,
                got.outcome,
                &got.error,
                &got.worker,
                got.host,
                got.order
            ),
            (
                &want.step,
                want.kind,
                want.attempt,
                want.outcome,
                &want.error,
                &want.worker,
                want.host,
                want.order
            ),
            "attempts in the order they started (rows without a start last)"
        );
        assert_eq!(
            got.started_at, want.started_at,
            "{} {:?} {}: start",
            got.step, got.kind, got.attempt
        );
        assert_eq!(
            got.ended_at.is_some(),
            want.ended_at.is_some(),
            "{} {:?}: end",
            got.step,
            got.kind
        );
    }
    assert_eq!(attempts[0].ended_at, run1_end.ended_at);

    // Attempt 2 runs again (its worker died before recording more): its
    // row starts over.
    let rerun = attempt(task_id, "Work", AttemptKind::Run, 2);
    write(history, &[HistoryRecord::AttemptStarted(rerun.clone())]).await;
    let attempts = history.task(task_id).await.unwrap().expect("kept").attempts;
    let row = attempts
        .iter()
        .find(|a| a.kind == AttemptKind::Run && a.attempt == 2)
        .unwrap();
    assert_eq!(row, &rerun, "a new start of one attempt resets its row");
    assert_eq!(attempts.len(), 4);
}

/// Conditions and audit entries read back in the order they were written;
/// an audit entry written twice is kept once.
pub async fn conditions_and_audit_in_order(history: &dyn TaskHistory) {
    let name = unique_name("Audit");
    let task = row(&name, now(), TaskStatus::Completed, Some("alice"));
    let task_id = task.progress.task_id;
    let entries: Vec<AuditEntry> = ["submit", "stepStarted", "stepCompleted", "cancel", "completed"]
        .into_iter()
        .enumerate()
        .map(|(i, action)| {
            let mut entry = AuditEntry::new(task_id, if i == 3 { "bob" } else { "system:node" }, action);
            entry.at = now();
            entry.step = (i == 1 || i == 2).then(|| "Work".to_owned());
            entry.before = Some("pending".into());
            entry.after = Some("running".into());
            entry.detail = (i == 2).then(|| "attempt 1".to_owned());
            entry.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
            entry
        })
        .collect();
    let condition = |holds: bool, height: &str| ConditionRecord {
        task_id,
        step: "Transcode4K".into(),
        snapshot: ConditionSnapshot {
            expression: "extract_metadata.height > 1080".into(),
            observed: vec![ObservedValue {
                path: "extract_metadata.height".into(),
                value: height.into(),
            }],
            holds,
        },
        at: now(),
    };
    let (first, second) = entries.split_at(2);
    let mut batch: Vec<HistoryRecord> = vec![HistoryRecord::Task(task)];
    batch.extend(first.iter().cloned().map(HistoryRecord::Audit));
    batch.push(HistoryRecord::Condition(condition(false, "720")));
    write(history, &batch).await;
    let mut batch: Vec<HistoryRecord> = second.iter().cloned().map(HistoryRecord::Audit).collect();
    batch.push(HistoryRecord::Condition(condition(true, "2160")));
    write(history, &batch).await;
    // The first batch's answer was lost: the writer sends it again.
    write(
        history,
        &first.iter().cloned().map(HistoryRecord::Audit).collect::<Vec<_>>(),
    )
    .await;

    let detail = history.task(task_id).await.unwrap().expect("kept");
    assert_eq!(detail.audit, entries, "every entry once, in order, whole");
    let verdicts: Vec<(bool, &str)> = (detail.conditions.iter())
        .map(|c| (c.snapshot.holds, c.snapshot.observed[0].value.as_str()))
        .collect();
    assert_eq!(
        verdicts,
        [(false, "720"), (true, "2160")],
        "conditions in order, with what they saw"
    );
    assert_eq!(
        detail.conditions[1],
        condition(true, "2160").with_at(detail.conditions[1].at)
    );
}

impl ConditionRecord {
    fn with_at(mut self, at: OffsetDateTime) -> Self {
        self.at = at;
        self
    }
}

/// Filters by name, status, submitter and creation time; pages newest
/// first with a cursor, without a task twice or missed, ties on the
/// creation time broken by id.
pub async fn list_filters_and_pages(history: &dyn TaskHistory) {
    let name = unique_name("List");
    let base = datetime!(2026-03-01 12:00:00.000001 UTC);
    let minute = time::Duration::minutes(1);
    let statuses = [
        TaskStatus::Completed,
        TaskStatus::Running,
        TaskStatus::Failed,
        TaskStatus::Completed,
        TaskStatus::Queued,
        TaskStatus::Completed,
        TaskStatus::Cancelled,
    ];
    let mut rows: Vec<TaskRecord> = statuses
        .iter()
        .enumerate()
        .map(|(i, status)| {
            // Two tasks share a creation time.
            let created = base + minute * (i.min(5) as i32);
            let who = if i % 2 == 0 { "alice" } else { "bob" };
            row(&name, created, *status, Some(who))
        })
        .collect();
    let other = row(&unique_name("Other"), base, TaskStatus::Completed, Some("alice"));
    let mut batch: Vec<HistoryRecord> = rows.iter().cloned().map(HistoryRecord::Task).collect();
    batch.push(HistoryRecord::Task(other));
    write(history, &batch).await;

    rows.sort_by_key(|r| std::cmp::Reverse((r.progress.created_at, r.progress.task_id)));
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = history
            .list(&HistoryQuery {
                cursor,
                limit: 3,
                ..query(&name)
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items);
        match page.next_cursor {
            // The cursor goes to the client as text and comes back.
            Some(next) => cursor = Some(next.to_string().parse::<HistoryCursor>().unwrap()),
            None => break,
        }
    }
    assert_eq!(ids(&seen), ids(&rows), "every task once, newest first, ties by id");

    let completed = history
        .list(&HistoryQuery {
            status: Some(TaskStatus::Completed),
            ..query(&name)
        })
        .await
        .unwrap();
    let want: Vec<&TaskRecord> = rows
        .iter()
        .filter(|r| r.progress.status == TaskStatus::Completed)
        .collect();
    assert_eq!(ids(&completed.items), ids(want.iter().copied()), "by status");

    let bobs = history
        .list(&HistoryQuery {
            submitter: Some("bob".into()),
            ..query(&name)
        })
        .await
        .unwrap();
    let want: Vec<&TaskRecord> = rows
        .iter()
        .filter(|r| r.progress.submitter.as_deref() == Some("bob"))
        .collect();
    assert_eq!(ids(&bobs.items), ids(want.iter().copied()), "by submitter");

    let window = history
        .list(&HistoryQuery {
            created_after: Some(base + minute),
            created_before: Some(base + minute * 3),
            ..query(&name)
        })
        .await
        .unwrap();
    let want: Vec<&TaskRecord> = (rows.iter())
        .filter(|r| r.progress.created_at >= base + minute && r.progress.created_at < base + minute * 3)
        .collect();
    assert_eq!(window.items.len(), 2);
    assert_eq!(
        ids(&window.items),
        ids(want.iter().copied()),
        "by creation time: from inclusive, to exclusive"
    );
}

fn ids<'a>(rows: impl IntoIterator<Item = &'a TaskRecord>) -> Vec<TaskId> {
    rows.into_iter().map(|r| r.progress.task_id).collect()
}

/// Purging deletes the tasks ended before the cutoff (at most `limit` at a
/// time) with everything kept about them, and nothing else.
pub async fn purge_removes_expired_ended_tasks(history: &dyn TaskHistory) {
    let name = unique_name("Purge");
    let long_ago = datetime!(1999-06-01 00:00:00 UTC);
    let cutoff = datetime!(2000-01-01 00:00:00 UTC);
    let expired = [
        row(&name, long_ago, TaskStatus::Completed, None),
        row(&name, long_ago, TaskStatus::Failed, None),
    ];
    let still_running = row(&name, long_ago, TaskStatus::Running, None);
    let recent = row(&name, now(), TaskStatus::Completed, None);
    let mut batch: Vec<HistoryRecord> = [&expired[0], &expired[1], &still_running, &recent]
        .into_iter()
        .cloned()
        .map(HistoryRecord::Task)
        .collect();
    for task in &expired {
        let task_id = task.progress.task_id;
        batch.push(HistoryRecord::AttemptStarted(attempt(
            task_id,
            "Work",
            AttemptKind::Run,
            1,
        )));
        batch.push(HistoryRecord::Audit(AuditEntry::new(
            task_id,
            "system:node",
            "completed",
        )));
    }
    write(history, &batch).await;

    assert_eq!(history.purge(cutoff, 1).await.unwrap(), 1, "at most `limit` at a time");
    assert_eq!(history.purge(cutoff, 10).await.unwrap(), 1);
    assert_eq!(history.purge(cutoff, 10).await.unwrap(), 0, "nothing more to purge");
    for task in &expired {
        assert!(history.task(task.progress.task_id).await.unwrap().is_none(), "purged");
    }
    let left = history.list(&query(&name)).await.unwrap();
    assert_eq!(
        ids(&left.items),
        vec![recent.progress.task_id, still_running.progress.task_id],
        "live and recent tasks stay"
    );
    // Records written after a purge (a late batch) come back without a
    // row: the task stays purged.
    let late = expired[0].progress.task_id;
    write(
        history,
        &[HistoryRecord::Audit(AuditEntry::new(late, "system:node", "late"))],
    )
    .await;
    assert!(history.task(late).await.unwrap().is_none(), "no row, no task");
}
