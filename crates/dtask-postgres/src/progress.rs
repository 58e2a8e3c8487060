//! The progress tracker: each task's latest snapshot in `dtask_progress`,
//! every change logged in `dtask_progress_changes`, and `NOTIFY` to wake
//! the streams, which read the log (so a notification lost while a
//! listener reconnects loses no change: the next read, at the latest after
//! the poll interval, finds it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dtask_core::infra::{ProgressPage, ProgressQuery, ProgressStream, ProgressTracker};
use dtask_core::{Error, Result, TaskId, TaskProgress, TaskStatus};
use futures::StreamExt;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use tokio::sync::{OnceCell, watch};
use uuid::Uuid;

use crate::error::pg_error;

const CHANNEL: &str = "dtask_progress";

/// How long logged changes are kept for streams that fall behind.
const CHANGE_RETENTION_SECS: i64 = 600;

/// Applies a newer snapshot (keeping a requested cancellation), logs it and
/// wakes the task's streams; returns nothing when the task is unknown or
/// the snapshot is not newer.
const UPDATE: &str = "
WITH up AS (
    UPDATE dtask_progress SET
        status = $2, revision = $3,
        ended_at = CASE WHEN $5 THEN clock_timestamp() END,
        body = CASE WHEN dtask_progress.cancel_requested
                    THEN jsonb_set($4, '{cancelRequested}', 'true') ELSE $4 END
    WHERE task_id = $1 AND revision < $3
    RETURNING task_id, body
), logged AS (
    INSERT INTO dtask_progress_changes (task_id, body) SELECT task_id, body FROM up
)
SELECT pg_notify('dtask_progress', task_id::text) FROM up";

const CANCEL: &str = "
WITH up AS (
    UPDATE dtask_progress SET
        cancel_requested = true, body = jsonb_set(body, '{cancelRequested}', 'true')
    WHERE task_id = $1 AND NOT cancel_requested AND ended_at IS NULL
    RETURNING task_id, body
), logged AS (
    INSERT INTO dtask_progress_changes (task_id, body) SELECT task_id, body FROM up
)
SELECT body, pg_notify('dtask_progress', task_id::text) FROM up";

/// The snapshot and the newest logged change it includes, in one reading.
const SNAPSHOT: &str = "
SELECT body, (SELECT coalesce(max(seq), 0) FROM dtask_progress_changes WHERE task_id = $1)
FROM dtask_progress WHERE task_id = $1";

const FILTER: &str = "
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR task_name = $2)
  AND ($3::text IS NULL OR submitter = $3)";

/// [`ProgressTracker`] on PostgreSQL. Cheap to clone; the clones share one
/// `LISTEN` connection, opened by the first stream.
#[derive(Debug, Clone)]
pub struct PostgresProgressTracker {
    pool: PgPool,
    poll_interval: Duration,
    hub: Arc<OnceCell<Arc<Hub>>>,
    last_purge: Arc<Mutex<Option<Instant>>>,
}

impl PostgresProgressTracker {
    pub(crate) fn new(pool: PgPool, poll_interval: Duration) -> Self {
        Self {
            pool,
            poll_interval,
            hub: Arc::new(OnceCell::new()),
            last_purge: Arc::new(Mutex::new(None)),
        }
    }

    async fn write(&self, progress: &TaskProgress) -> Result<()> {
        let task = *progress.task_id.as_uuid();
        let written = sqlx::query(UPDATE)
            .bind(task)
            .bind(status_name(progress.status))
            .bind(revision(progress.revision))
            .bind(Json(progress))
            .bind(progress.is_terminal())
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?;
        if written.is_some() {
            return Ok(());
        }
        let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM dtask_progress WHERE task_id = $1)")
            .bind(task)
            .fetch_one(&self.pool)
            .await
            .map_err(pg_error)?;
        if known {
            Ok(()) // an older snapshot: ignored
        } else {
            Err(unknown(progress.task_id))
        }
    }

    /// Deletes logged changes past their retention, at most once a minute.
    async fn purge_changes(&self) {
        {
            let mut last = self.last_purge.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let purged =
            sqlx::query("DELETE FROM dtask_progress_changes WHERE at < clock_timestamp() - $1 * interval '1 second'")
                .bind(CHANGE_RETENTION_SECS)
                .execute(&self.pool)
                .await;
        if let Err(error) = purged {
            tracing::warn!(%error, "purging old progress changes failed");
        }
    }

    async fn hub(&self) -> Option<Arc<Hub>> {
        let hub = self.hub.get_or_try_init(|| Hub::start(self.pool.clone())).await;
        match hub {
            Ok(hub) => Some(Arc::clone(hub)),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for progress changes; streams poll instead");
                None
            }
        }
    }
}

fn unknown(task_id: TaskId) -> Error {
    Error::not_found(format!("task {task_id}"))
}

fn revision(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// A status as stored (its serde name).
fn status_name(status: TaskStatus) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{status:?}"),
    }
}

#[async_trait]
impl ProgressTracker for PostgresProgressTracker {
    async fn init(&self, progress: &TaskProgress) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO dtask_progress
                 (task_id, task_name, status, submitter, created_at, revision, cancel_requested, ended_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN clock_timestamp() END, $9)
             ON CONFLICT (task_id) DO NOTHING",
        )
        .bind(*progress.task_id.as_uuid())
        .bind(&progress.task_name)
        .bind(status_name(progress.status))
        .bind(&progress.submitter)
        .bind(progress.created_at)
        .bind(revision(progress.revision))
        .bind(progress.cancel_requested)
        .bind(progress.is_terminal())
        .bind(Json(progress))
        .execute(&self.pool)
        .await
        .map_err(pg_error)?;
        if inserted.rows_affected() == 0 {
            return Err(Error::AlreadyExists {
                what: format!("task {}", progress.task_id),
            });
        }
        Ok(())
    }

    async fn update(&self, progress: &TaskProgress) -> Result<()> {
        self.write(progress).await
    }

    async fn complete(&self, progress: &TaskProgress) -> Result<()> {
        if !progress.is_terminal() {
            return Err(Error::invalid(
                "progress",
                format!(
                    "complete needs a terminal snapshot; task {} is {:?}",
                    progress.task_id, progress.status
                ),
            ));
        }
        self.write(progress).await?;
        self.purge_changes().await;
        Ok(())
    }

    async fn get(&self, task_id: TaskId) -> Result<Option<TaskProgress>> {
        let body: Option<Json<TaskProgress>> = sqlx::query_scalar("SELECT body FROM dtask_progress WHERE task_id = $1")
            .bind(*task_id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(body.map(|Json(progress)| progress))
    }

    async fn stream(&self, task_id: TaskId) -> Result<ProgressStream> {
        // Subscribe first: a change made after the snapshot wakes us.
        let wake = self.hub().await.map(|hub| hub.subscribe(*task_id.as_uuid()));
        let row: Option<(Json<TaskProgress>, i64)> = sqlx::query_as(SNAPSHOT)
            .bind(*task_id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?;
        let (Json(first), seen) = row.ok_or_else(|| unknown(task_id))?;
        let follower = Follower {
            pool: self.pool.clone(),
            task: *task_id.as_uuid(),
            seen,
            pending: VecDeque::from([first]),
            ended: false,
            wake,
            poll_interval: self.poll_interval,
        };
        Ok(futures::stream::unfold(follower, |mut follower| async move {
            follower.next().await.map(|progress| (progress, follower))
        })
        .boxed())
    }

    async fn request_cancellation(&self, task_id: TaskId) -> Result<TaskProgress> {
        let changed: Option<(Json<TaskProgress>,)> = sqlx::query_as(CANCEL)
            .bind(*task_id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?;
        if let Some((Json(progress),)) = changed {
            return Ok(progress);
        }
        // Already asked, or ended: unchanged.
        self.get(task_id).await?.ok_or_else(|| unknown(task_id))
    }

    async fn list(&self, query: &ProgressQuery) -> Result<ProgressPage> {
        let status = query.status.map(status_name);
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM dtask_progress {FILTER}"))
            .bind(&status)
            .bind(&query.task_name)
            .bind(&query.submitter)
            .fetch_one(&self.pool)
            .await
            .map_err(pg_error)?;
        let items: Vec<Json<TaskProgress>> = sqlx::query_scalar(&format!(
            "SELECT body FROM dtask_progress {FILTER}
             ORDER BY created_at DESC, task_id DESC OFFSET $4 LIMIT $5"
        ))
        .bind(&status)
        .bind(&query.task_name)
        .bind(&query.submitter)
        .bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
        .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_error)?;
        Ok(ProgressPage {
            items: items.into_iter().map(|Json(progress)| progress).collect(),
            total: usize::try_from(total).unwrap_or_default(),
        })
    }

    async fn ping(&self) -> Result<()> {
        crate::config::ping(&self.pool).await
    }
}

/// One stream's reader of the change log.
struct Follower {
    pool: PgPool,
    task: Uuid,
    /// The newest logged change already yielded (or in the first snapshot).
    seen: i64,
    pending: VecDeque<TaskProgress>,
    ended: bool,
    wake: Option<Subscription>,
    poll_interval: Duration,
}

impl Follower {
    async fn next(&mut self) -> Option<TaskProgress> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(progress) = self.pending.pop_front() {
                self.ended = progress.is_terminal();
                return Some(progress);
            }
            match self.read_changes().await {
                Ok(true) => continue,
                Ok(false) => self.wait().await,
                Err(error) => {
                    tracing::warn!(task_id = %self.task, %error, "reading progress changes failed; retrying");
                    tokio::time::sleep(self.poll_interval).await;
                }
            }
        }
    }

    /// Queues the changes logged since the last one seen; whether any were.
    async fn read_changes(&mut self) -> Result<bool> {
        let rows: Vec<(i64, Json<TaskProgress>)> =
            sqlx::query_as("SELECT seq, body FROM dtask_progress_changes WHERE task_id = $1 AND seq > $2 ORDER BY seq")
                .bind(self.task)
                .bind(self.seen)
                .fetch_all(&self.pool)
                .await
                .map_err(pg_error)?;
        let found = !rows.is_empty();
        for (seq, Json(progress)) in rows {
            self.seen = seq;
            self.pending.push_back(progress);
        }
        Ok(found)
    }

    /// Until a notification for the task, or the poll interval.
    async fn wait(&mut self) {
        match &mut self.wake {
            Some(subscription) => {
                let _ = tokio::time::timeout(self.poll_interval, subscription.receiver.changed()).await;
            }
            None => tokio::time::sleep(self.poll_interval).await,
        }
    }
}

/// The shared `LISTEN` connection, waking the streams of each task.
#[derive(Debug)]
struct Hub {
    watchers: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
}

impl Hub {
    async fn start(pool: PgPool) -> std::result::Result<Arc<Self>, sqlx::Error> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let hub = Arc::new(Self {
            watchers: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                let received = listener.try_recv().await;
                let Some(hub) = weak.upgrade() else {
                    return;
                };
                match received {
                    Ok(Some(notification)) => match notification.payload().parse::<Uuid>() {
                        Ok(task) => hub.wake(task),
                        Err(_) => tracing::debug!(payload = notification.payload(), "a foreign progress notification"),
                    },
                    // The connection dropped (and re-opens on the next call):
                    // whatever was sent meanwhile is in the log; look again.
                    Ok(None) => hub.wake_all(),
                    Err(error) => {
                        tracing::warn!(%error, "listening for progress changes failed");
                        hub.wake_all();
                        drop(hub);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(hub)
    }

    fn subscribe(self: &Arc<Self>, task: Uuid) -> Subscription {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = watchers.entry(task).or_insert_with(|| watch::channel(0).0).subscribe();
        Subscription {
            hub: Arc::clone(self),
            task,
            receiver,
        }
    }

    fn wake(&self, task: Uuid) {
        let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = watchers.get(&task) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for sender in watchers.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// A stream's place in the hub; the task's entry goes with its last one.
struct Subscription {
    hub: Arc<Hub>,
    task: Uuid,
    receiver: watch::Receiver<u64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut watchers = self.hub.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if watchers
            .get(&self.task)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            watchers.remove(&self.task);
        }
    }
}
