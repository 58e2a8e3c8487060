//! The task history on PostgreSQL: `dtask_history_tasks` (one row per
//! task), `dtask_history_attempts`, `dtask_history_conditions` and the
//! append-only `dtask_history_audit`. A batch is one transaction of at most
//! five statements, each taking its records as arrays (`UNNEST`), whatever
//! the batch's size.

use std::collections::HashMap;

use async_trait::async_trait;
use dtask_core::history::{
    AttemptKind, AuditEntry, ConditionRecord, HistoryPage, HistoryQuery, HistoryRecord, StepAttempt, TaskHistoryDetail,
    TaskRecord,
};
use dtask_core::infra::TaskHistory;
use dtask_core::{Error, Result, TaskId, TaskProgress};
use serde::de::DeserializeOwned;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{BACKEND, pg_error};

/// A row replaces the stored one only when its revision is newer.
const UPSERT_TASKS: &str = "
INSERT INTO dtask_history_tasks AS t (task_id, task_name, version, status, submitter, created_at, started_at,
    ended_at, deadline, error, response_summary, trace_id, revision, progress)
SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::timestamptz[],
    $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::bigint[],
    $14::jsonb[])
ON CONFLICT (task_id) DO UPDATE SET
    task_name = EXCLUDED.task_name, version = EXCLUDED.version, status = EXCLUDED.status,
    submitter = EXCLUDED.submitter, created_at = EXCLUDED.created_at, started_at = EXCLUDED.started_at,
    ended_at = EXCLUDED.ended_at, deadline = EXCLUDED.deadline, error = EXCLUDED.error,
    response_summary = EXCLUDED.response_summary, trace_id = EXCLUDED.trace_id,
    revision = EXCLUDED.revision, progress = EXCLUDED.progress
WHERE t.revision < EXCLUDED.revision";

/// A record with a start makes the row anew (its end, if the batch held
/// one too, included); a record with only an end sets the end.
const UPSERT_ATTEMPTS: &str = "
INSERT INTO dtask_history_attempts AS a (task_id, step, kind, attempt, step_order, host, worker, started_at,
    ended_at, outcome, error)
SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[], $7::text[],
    $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[])
ON CONFLICT (task_id, step, kind, attempt) DO UPDATE SET
    started_at = coalesce(EXCLUDED.started_at, a.started_at),
    worker = CASE WHEN EXCLUDED.started_at IS NULL THEN a.worker ELSE EXCLUDED.worker END,
    ended_at = CASE WHEN EXCLUDED.started_at IS NULL AND EXCLUDED.ended_at IS NULL THEN a.ended_at
                    ELSE EXCLUDED.ended_at END,
    outcome = CASE WHEN EXCLUDED.started_at IS NULL AND EXCLUDED.ended_at IS NULL THEN a.outcome
                   ELSE EXCLUDED.outcome END,
    error = CASE WHEN EXCLUDED.started_at IS NULL AND EXCLUDED.ended_at IS NULL THEN a.error
                 ELSE EXCLUDED.error END";

const INSERT_CONDITIONS: &str = "
INSERT INTO dtask_history_conditions (task_id, step, at, holds, snapshot)
SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::bool[], $5::jsonb[])
ON CONFLICT DO NOTHING";

const INSERT_AUDIT: &str = "
INSERT INTO dtask_history_audit (id, task_id, at, actor, action, step, before, after, detail, trace_id)
SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::text[])
ON CONFLICT DO NOTHING";

const LIST: &str = "
SELECT progress, version, deadline, response_summary FROM dtask_history_tasks
WHERE ($1::text IS NULL OR task_name = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR submitter = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND ($6::timestamptz IS NULL OR (created_at, task_id) < ($6, $7))
ORDER BY created_at DESC, task_id DESC
LIMIT $8";

const PURGE: &str = "
WITH doomed AS (
    SELECT task_id FROM dtask_history_tasks WHERE ended_at < $1
    ORDER BY ended_at LIMIT $2 FOR UPDATE SKIP LOCKED
), attempts AS (
    DELETE FROM dtask_history_attempts WHERE task_id IN (SELECT task_id FROM doomed)
), conditions AS (
    DELETE FROM dtask_history_conditions WHERE task_id IN (SELECT task_id FROM doomed)
), audit AS (
    DELETE FROM dtask_history_audit WHERE task_id IN (SELECT task_id FROM doomed)
)
DELETE FROM dtask_history_tasks WHERE task_id IN (SELECT task_id FROM doomed)";

/// [`TaskHistory`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresTaskHistory {
    pool: PgPool,
}

impl PostgresTaskHistory {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A row as read: the progress, version, deadline and response summary.
type TaskRow = (Json<TaskProgress>, i32, Option<OffsetDateTime>, Option<String>);

fn task_record((Json(progress), version, deadline, response_summary): TaskRow) -> TaskRecord {
    TaskRecord {
        progress,
        version: u32::try_from(version).unwrap_or_default(),
        deadline,
        response_summary,
    }
}

/// A wire name (`"worker"`, `"compensation"`, ...) read back through the
/// type's serde form.
fn parse<T: DeserializeOwned>(name: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|e| {
        Error::backend(
            BACKEND,
            format!("the history holds `{name}`, which this version cannot read: {e}"),
        )
    })
}

/// The wire name of a unit variant (its serde form).
fn wire<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[async_trait]
impl TaskHistory for PostgresTaskHistory {
    async fn write(&self, batch: &[HistoryRecord]) -> Result<()> {
        let mut tasks: HashMap<TaskId, &TaskRecord> = HashMap::new();
        let mut attempts: Vec<StepAttempt> = Vec::new();
        let mut conditions = Vec::new();
        let mut audit = Vec::new();
        for record in batch {
            match record {
                HistoryRecord::Task(row) => {
                    let newest = tasks.entry(row.progress.task_id).or_insert(row);
                    if newest.progress.revision < row.progress.revision {
                        *newest = row;
                    }
                }
                HistoryRecord::AttemptStarted(attempt) => merge_attempt(&mut attempts, attempt, true),
                HistoryRecord::AttemptEnded(attempt) => merge_attempt(&mut attempts, attempt, false),
                HistoryRecord::Condition(condition) => conditions.push(condition),
                HistoryRecord::Audit(entry) => audit.push(entry),
            }
        }
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        if !tasks.is_empty() {
            upsert_tasks(&mut tx, tasks.into_values()).await?;
        }
        if !attempts.is_empty() {
            upsert_attempts(&mut tx, &attempts).await?;
        }
        if !conditions.is_empty() {
            insert_conditions(&mut tx, &conditions).await?;
        }
        if !audit.is_empty() {
            insert_audit(&mut tx, &audit).await?;
        }
        tx.commit().await.map_err(pg_error)
    }

    async fn list(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows: Vec<TaskRow> = sqlx::query_as(LIST)
            .bind(query.task_name.as_deref())
            .bind(query.status.map(|s| s.as_str()))
            .bind(query.submitter.as_deref())
            .bind(query.created_after)
            .bind(query.created_before)
            .bind(query.cursor.map(|c| c.created_at))
            .bind(query.cursor.map(|c| *c.task_id.as_uuid()))
            .bind(limit.saturating_add(1))
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(HistoryPage::of(
            rows.into_iter().map(task_record).collect(),
            query.limit,
        ))
    }

    async fn task(&self, task_id: TaskId) -> Result<Option<TaskHistoryDetail>> {
        let id = *task_id.as_uuid();
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        let row: Option<TaskRow> = sqlx::query_as(
            "SELECT progress, version, deadline, response_summary FROM dtask_history_tasks WHERE task_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let attempts = read_attempts(&mut tx, task_id).await?;
        let conditions = read_conditions(&mut tx, task_id).await?;
        let audit = read_audit(&mut tx, task_id).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(TaskHistoryDetail {
            task: task_record(row),
            attempts,
            conditions,
            audit,
        }))
    }

    async fn purge(&self, ended_before: OffsetDateTime, limit: usize) -> Result<usize> {
        let done = sqlx::query(PURGE)
            .bind(ended_before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }
}

/// Folds `attempt` into the batch's attempts: one statement may touch a
/// row once, so a start and an end of one attempt become one record.
fn merge_attempt(attempts: &mut Vec<StepAttempt>, attempt: &StepAttempt, start: bool) {
    let same = |a: &&mut StepAttempt| {
        (a.task_id, &a.step, a.kind, a.attempt) == (attempt.task_id, &attempt.step, attempt.kind, attempt.attempt)
    };
    match attempts.iter_mut().find(same) {
        Some(row) if start => *row = attempt.clone(),
        Some(row) => {
            row.ended_at = attempt.ended_at;
            row.outcome = attempt.outcome;
            row.error.clone_from(&attempt.error);
        }
        None => attempts.push(attempt.clone()),
    }
}

async fn upsert_tasks<'a>(
    tx: &mut Transaction<'_, Postgres>,
    rows: impl Iterator<Item = &'a TaskRecord>,
) -> Result<()> {
    let rows: Vec<&TaskRecord> = rows.collect();
    let p = |f: fn(&TaskProgress) -> Option<String>| rows.iter().map(|r| f(&r.progress)).collect::<Vec<_>>();
    sqlx::query(UPSERT_TASKS)
        .bind(
            rows.iter()
                .map(|r| *r.progress.task_id.as_uuid())
                .collect::<Vec<Uuid>>(),
        )
        .bind(p(|p| Some(p.task_name.clone())))
        .bind(rows.iter().map(|r| int(r.version)).collect::<Vec<_>>())
        .bind(p(|p| Some(p.status.as_str().to_owned())))
        .bind(p(|p| p.submitter.clone()))
        .bind(rows.iter().map(|r| r.progress.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.started_at()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.progress.completed_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.deadline).collect::<Vec<_>>())
        .bind(p(|p| p.error.clone()))
        .bind(rows.iter().map(|r| r.response_summary.clone()).collect::<Vec<_>>())
        .bind(p(|p| p.trace_id.clone()))
        .bind(
            rows.iter()
                .map(|r| i64::try_from(r.progress.revision).unwrap_or(i64::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| Json(&r.progress)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(pg_error)?;
    Ok(())
}

async fn upsert_attempts(tx: &mut Transaction<'_, Postgres>, rows: &[StepAttempt]) -> Result<()> {
    let text = |f: fn(&StepAttempt) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(UPSERT_ATTEMPTS)
        .bind(rows.iter().map(|a| *a.task_id.as_uuid()).collect::<Vec<_>>())
        .bind(text(|a| Some(a.step.clone())))
        .bind(text(|a| Some(a.kind.as_str().to_owned())))
        .bind(rows.iter().map(|a| int(a.attempt)).collect::<Vec<_>>())
        .bind(rows.iter().map(|a| int(a.order)).collect::<Vec<_>>())
        .bind(text(|a| Some(wire(&a.host))))
        .bind(text(|a| Some(a.worker.clone())))
        .bind(rows.iter().map(|a| a.started_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|a| a.ended_at).collect::<Vec<_>>())
        .bind(text(|a| a.outcome.map(|o| o.as_str().to_owned())))
        .bind(text(|a| a.error.clone()))
        .execute(&mut **tx)
        .await
        .map_err(pg_error)?;
    Ok(())
}

async fn insert_conditions(tx: &mut Transaction<'_, Postgres>, rows: &[&ConditionRecord]) -> Result<()> {
    sqlx::query(INSERT_CONDITIONS)
        .bind(rows.iter().map(|c| *c.task_id.as_uuid()).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.step.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.at).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.snapshot.holds).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| Json(&c.snapshot)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(pg_error)?;
    Ok(())
}

async fn insert_audit(tx: &mut Transaction<'_, Postgres>, rows: &[&AuditEntry]) -> Result<()> {
    let text = |f: fn(&AuditEntry) -> Option<String>| rows.iter().map(|e| f(e)).collect::<Vec<_>>();
    sqlx::query(INSERT_AUDIT)
        .bind(rows.iter().map(|e| e.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|e| *e.task_id.as_uuid()).collect::<Vec<_>>())
        .bind(rows.iter().map(|e| e.at).collect::<Vec<_>>())
        .bind(text(|e| Some(e.actor.clone())))
        .bind(text(|e| Some(e.action.clone())))
        .bind(text(|e| e.step.clone()))
        .bind(text(|e| e.before.clone()))
        .bind(text(|e| e.after.clone()))
        .bind(text(|e| e.detail.clone()))
        .bind(text(|e| e.trace_id.clone()))
        .execute(&mut **tx)
        .await
        .map_err(pg_error)?;
    Ok(())
}

type AttemptRow = (
    String,
    String,
    i32,
    i32,
    String,
    String,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
    Option<String>,
    Option<String>,
);

async fn read_attempts(tx: &mut Transaction<'_, Postgres>, task_id: TaskId) -> Result<Vec<StepAttempt>> {
    let rows: Vec<AttemptRow> = sqlx::query_as(
        "SELECT step, kind, attempt, step_order, host, worker, started_at, ended_at, outcome, error
         FROM dtask_history_attempts WHERE task_id = $1 ORDER BY started_at NULLS LAST, seq",
    )
    .bind(*task_id.as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(pg_error)?;
    rows.into_iter()
        .map(
            |(step, kind, attempt, order, host, worker, started_at, ended_at, outcome, error)| {
                Ok(StepAttempt {
                    task_id,
                    step,
                    order: u32::try_from(order).unwrap_or_default(),
                    host: parse(&host)?,
                    kind: parse::<AttemptKind>(&kind)?,
                    attempt: u32::try_from(attempt).unwrap_or_default(),
                    worker,
                    started_at,
                    ended_at,
                    outcome: outcome.as_deref().map(parse).transpose()?,
                    error,
                })
            },
        )
        .collect()
}

async fn read_conditions(tx: &mut Transaction<'_, Postgres>, task_id: TaskId) -> Result<Vec<ConditionRecord>> {
    let rows: Vec<(String, OffsetDateTime, Json<dtask_core::progress::ConditionSnapshot>)> =
        sqlx::query_as("SELECT step, at, snapshot FROM dtask_history_conditions WHERE task_id = $1 ORDER BY at, seq")
            .bind(*task_id.as_uuid())
            .fetch_all(&mut **tx)
            .await
            .map_err(pg_error)?;
    Ok(rows
        .into_iter()
        .map(|(step, at, Json(snapshot))| ConditionRecord {
            task_id,
            step,
            snapshot,
            at,
        })
        .collect())
}

type AuditRow = (
    Uuid,
    OffsetDateTime,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn read_audit(tx: &mut Transaction<'_, Postgres>, task_id: TaskId) -> Result<Vec<AuditEntry>> {
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT id, at, actor, action, step, before, after, detail, trace_id
         FROM dtask_history_audit WHERE task_id = $1 ORDER BY at, seq",
    )
    .bind(*task_id.as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(pg_error)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, at, actor, action, step, before, after, detail, trace_id)| AuditEntry {
                id,
                task_id,
                at,
                actor,
                action,
                step,
                before,
                after,
                detail,
                trace_id,
            },
        )
        .collect())
}
