//! The work queue on PostgreSQL: rows claimed with `FOR UPDATE SKIP
//! LOCKED` under a lease, consumers woken by `LISTEN`/`NOTIFY`, dead
//! letters in a table of their own.
//!
//! A claim gives each row a fresh lease id and hides it for the visibility
//! timeout. While a delivery is held, its consumer renews every held lease
//! in one statement each third of the timeout; settling (ack, nack, dead
//! letter) names the lease, so a consumer whose lease lapsed, and whose
//! message another consumer took, settles nothing ([`Error::NotOwned`]).
//! A consumer that dies stops renewing: its messages come back when the
//! timeout runs out.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dtask_core::infra::{
    Acknowledger, DeadLetter, DeadLetters, Delivery, DeliveryStream, QueueConsumer, QueueDepth, QueueDepths,
    QueueMessage, QueuePublisher,
};
use dtask_core::trace::TraceParent;
use dtask_core::{Error, Format, Payload, Result, SCHEMA_VERSION};
use futures::StreamExt;
use sqlx::postgres::PgListener;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::error::{millis, pg_error};

/// The channel publishers and nacks notify, with the queue's name.
const CHANNEL: &str = "dtask_queue";

const PUBLISH: &str = "
WITH sent AS (
    INSERT INTO dtask_queue (queue, message_id, task_id, task_name, format, schema_version, body, traceparent, member)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    RETURNING queue
)
SELECT pg_notify('dtask_queue', queue) FROM sent";

/// Claims up to `$2` ready messages of queue `$1` for `$3` ms, oldest first.
const CLAIM: &str = "
UPDATE dtask_queue AS q
SET deliveries = q.deliveries + 1, lease = gen_random_uuid(),
    visible_at = clock_timestamp() + $3 * interval '1 millisecond'
FROM (
    SELECT id FROM dtask_queue
    WHERE queue = $1 AND visible_at <= clock_timestamp()
    ORDER BY id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
) AS ready
WHERE q.id = ready.id
RETURNING q.id, q.lease, q.message_id, q.task_id, q.task_name, q.format, q.body, q.deliveries, q.traceparent, q.member";

const RENEW: &str = "
UPDATE dtask_queue SET visible_at = clock_timestamp() + $2 * interval '1 millisecond'
WHERE lease = ANY($1)";

const ACK: &str = "DELETE FROM dtask_queue WHERE id = $1 AND lease = $2";

const NACK: &str = "
WITH back AS (
    UPDATE dtask_queue SET lease = NULL, visible_at = clock_timestamp()
    WHERE id = $1 AND lease = $2
    RETURNING queue
)
SELECT pg_notify('dtask_queue', queue) FROM back";

const DEAD_LETTER: &str = "
WITH moved AS (
    DELETE FROM dtask_queue WHERE id = $1 AND lease = $2
    RETURNING queue, message_id, task_id, task_name, format, schema_version, body, deliveries, traceparent, member
)
INSERT INTO dtask_dead_letters
    (queue, message_id, task_id, task_name, format, schema_version, body, deliveries, reason, traceparent, member)
SELECT queue, message_id, task_id, task_name, format, schema_version, body, deliveries, $3, traceparent, member
FROM moved";

/// The work queue, its consumers and its dead letters on PostgreSQL
/// (tables `dtask_queue`, `dtask_dead_letters`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct PostgresQueue {
    pool: PgPool,
    visibility: Duration,
    poll_interval: Duration,
    prefetch: i64,
}

impl PostgresQueue {
    pub(crate) fn new(pool: PgPool, visibility: Duration, poll_interval: Duration) -> Self {
        Self {
            pool,
            visibility,
            poll_interval,
            prefetch: 1,
        }
    }

    /// How many messages a consumer claims at a time (default 1: a message
    /// waits in the table, free for any consumer, until one has room for it).
    #[must_use]
    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = i64::from(prefetch.max(1));
        self
    }

    /// How many messages `queue` holds, waiting or out for delivery.
    ///
    /// # Errors
    /// A backend error.
    pub async fn len(&self, queue: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM dtask_queue WHERE queue = $1")
            .bind(queue)
            .fetch_one(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Deletes `queue`'s messages and dead letters.
    ///
    /// # Errors
    /// A backend error.
    pub async fn delete_queue(&self, queue: &str) -> Result<()> {
        for table in ["dtask_queue", "dtask_dead_letters"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE queue = $1"))
                .bind(queue)
                .execute(&self.pool)
                .await
                .map_err(pg_error)?;
        }
        Ok(())
    }
}

#[async_trait]
impl QueuePublisher for PostgresQueue {
    /// # Errors
    /// [`Error::Unsupported`] for an in-memory payload; a backend error.
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()> {
        let (format, bytes) = message.payload.encoded()?;
        sqlx::query(PUBLISH)
            .bind(queue)
            .bind(message.id)
            .bind(*message.task_id.as_uuid())
            .bind(&message.task_name)
            .bind(format.name())
            .bind(i32::try_from(SCHEMA_VERSION).unwrap_or(i32::MAX))
            .bind(&bytes[..])
            .bind(message.trace_parent.map(|parent| parent.to_string()))
            .bind(message.member)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(pg_error)
    }

    async fn ping(&self) -> Result<()> {
        crate::config::ping(&self.pool).await
    }
}

#[async_trait]
impl QueueConsumer for PostgresQueue {
    async fn consume(&self, queue: &str) -> Result<DeliveryStream> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(pg_error)?;
        listener.listen(CHANNEL).await.map_err(pg_error)?;
        let held = Arc::new(Held::default());
        tokio::spawn(renew(self.pool.clone(), Arc::downgrade(&held), self.visibility));
        let consumer = Consumer {
            queue: self.clone(),
            name: queue.to_owned(),
            listener,
            held,
            ready: VecDeque::new(),
        };
        Ok(futures::stream::unfold(consumer, |mut consumer| async move {
            let next = consumer.next().await;
            Some((next, consumer))
        })
        .boxed())
    }

    async fn ping(&self) -> Result<()> {
        crate::config::ping(&self.pool).await
    }
}

/// A message is waiting while it is visible, out for delivery while its
/// lease's visibility timeout runs.
const DEPTH: &str = "
SELECT count(*) FILTER (WHERE visible_at <= clock_timestamp()),
       count(*) FILTER (WHERE visible_at > clock_timestamp() AND lease IS NOT NULL)
FROM dtask_queue WHERE queue = $1";

#[async_trait]
impl QueueDepths for PostgresQueue {
    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        let (waiting, in_flight): (i64, i64) = sqlx::query_as(DEPTH)
            .bind(queue)
            .fetch_one(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(QueueDepth {
            waiting: u64::try_from(waiting).unwrap_or_default(),
            in_flight: Some(u64::try_from(in_flight).unwrap_or_default()),
        })
    }
}

#[async_trait]
impl DeadLetters for PostgresQueue {
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        let rows: Vec<DeadRow> = sqlx::query_as(
            "SELECT id, message_id, task_id, task_name, format, body, deliveries, reason, traceparent, member
             FROM dtask_dead_letters WHERE queue = $1 ORDER BY id LIMIT $2",
        )
        .bind(queue)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_error)?;
        Ok(rows.into_iter().map(DeadRow::into_dead_letter).collect())
    }

    async fn remove_dead_letter(&self, queue: &str, id: &str) -> Result<bool> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(false);
        };
        let removed = sqlx::query("DELETE FROM dtask_dead_letters WHERE queue = $1 AND id = $2")
            .bind(queue)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(removed.rows_affected() > 0)
    }
}

/// The leases a consumer's deliveries hold, renewed together.
#[derive(Default)]
struct Held {
    leases: Mutex<HashSet<Uuid>>,
}

impl Held {
    fn hold(&self, lease: Uuid) {
        self.leases.lock().unwrap_or_else(|e| e.into_inner()).insert(lease);
    }

    fn let_go(&self, lease: Uuid) {
        self.leases.lock().unwrap_or_else(|e| e.into_inner()).remove(&lease);
    }

    fn leases(&self) -> Vec<Uuid> {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// Renews the held leases every third of the visibility timeout, for as
/// long as the consumer's stream or one of its deliveries lives.
async fn renew(pool: PgPool, held: Weak<Held>, visibility: Duration) {
    loop {
        tokio::time::sleep(visibility / 3).await;
        let Some(held) = held.upgrade() else {
            return;
        };
        let leases = held.leases();
        drop(held);
        if leases.is_empty() {
            continue;
        }
        let renewed = sqlx::query(RENEW)
            .bind(&leases)
            .bind(millis(visibility))
            .execute(&pool)
            .await;
        if let Err(error) = renewed {
            tracing::warn!(%error, held = leases.len(), "renewing held messages failed");
        }
    }
}

/// One consumer's stream: claims, then waits for a notification or the
/// poll interval.
struct Consumer {
    queue: PostgresQueue,
    name: String,
    listener: PgListener,
    held: Arc<Held>,
    ready: VecDeque<Delivery>,
}

impl Consumer {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            if let Some(delivery) = self.ready.pop_front() {
                return Ok(delivery);
            }
            let mut rows: Vec<ClaimedRow> = sqlx::query_as(CLAIM)
                .bind(&self.name)
                .bind(self.queue.prefetch)
                .bind(millis(self.queue.visibility))
                .fetch_all(&self.queue.pool)
                .await
                .map_err(pg_error)?;
            if rows.is_empty() {
                self.wait().await;
                continue;
            }
            rows.sort_by_key(|row| row.id);
            for row in rows {
                if let Some(delivery) = self.delivery(row).await {
                    self.ready.push_back(delivery);
                }
            }
        }
    }

    /// Until a message may be ready: a notification on the channel (any
    /// queue's: one channel serves all) or the poll interval.
    async fn wait(&mut self) {
        match tokio::time::timeout(self.queue.poll_interval, self.listener.try_recv()).await {
            // A notification, the poll interval, or a lost connection
            // (re-opened by the next call; what was notified meanwhile the
            // next claim finds): claim again.
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(error)) => {
                tracing::warn!(queue = self.name, %error, "listening for new messages failed");
                tokio::time::sleep(self.queue.poll_interval).await;
            }
        }
    }

    /// The delivery of a claimed row; a row that cannot be read is
    /// dead-lettered with the reason instead.
    async fn delivery(&self, row: ClaimedRow) -> Option<Delivery> {
        let acker = Acker {
            pool: self.queue.pool.clone(),
            id: row.id,
            lease: row.lease,
            queue: self.name.clone(),
            held: Arc::clone(&self.held),
            settled: false,
        };
        self.held.hold(row.lease);
        let format = match row.format.parse::<Format>() {
            Ok(format) => format,
            Err(error) => {
                let reason = format!("unreadable message: {error}");
                tracing::warn!(queue = self.name, id = row.id, reason, "dead-lettering a message");
                if let Err(error) = Box::new(acker).dead_letter(&reason).await {
                    tracing::warn!(queue = self.name, %error, "could not dead-letter an unreadable message");
                }
                return None;
            }
        };
        let message = QueueMessage {
            id: row.message_id,
            task_id: row.task_id.into(),
            task_name: row.task_name,
            payload: Payload::Encoded {
                format,
                bytes: Bytes::from(row.body),
            },
            trace_parent: parse_trace_parent(row.traceparent.as_deref()),
            member: row.member,
        };
        let count = u32::try_from(row.deliveries).unwrap_or_default();
        Some(Delivery::new(message, count, Box::new(acker)))
    }
}

#[derive(FromRow)]
struct ClaimedRow {
    id: i64,
    lease: Uuid,
    message_id: Uuid,
    task_id: Uuid,
    task_name: String,
    format: String,
    body: Vec<u8>,
    deliveries: i32,
    traceparent: Option<String>,
    member: Option<String>,
}

#[derive(FromRow)]
struct DeadRow {
    id: i64,
    message_id: Uuid,
    task_id: Uuid,
    task_name: String,
    format: String,
    body: Vec<u8>,
    deliveries: i32,
    reason: String,
    traceparent: Option<String>,
    member: Option<String>,
}

/// A stored `traceparent`; a trace context is a hint, so an unreadable one
/// starts a new trace.
fn parse_trace_parent(value: Option<&str>) -> Option<TraceParent> {
    value.and_then(|value| value.parse().ok())
}

impl DeadRow {
    fn into_dead_letter(self) -> DeadLetter {
        let message = self.format.parse::<Format>().ok().map(|format| QueueMessage {
            id: self.message_id,
            task_id: self.task_id.into(),
            task_name: self.task_name,
            payload: Payload::Encoded {
                format,
                bytes: Bytes::from(self.body),
            },
            trace_parent: parse_trace_parent(self.traceparent.as_deref()),
            member: self.member,
        });
        DeadLetter {
            id: self.id.to_string(),
            message,
            deliveries: u32::try_from(self.deliveries).unwrap_or_default(),
            reason: self.reason,
        }
    }
}

/// Settles one claimed row, by its id and lease.
struct Acker {
    pool: PgPool,
    id: i64,
    lease: Uuid,
    queue: String,
    held: Arc<Held>,
    settled: bool,
}

impl Acker {
    async fn settle(mut self: Box<Self>, query: &'static str, reason: Option<&str>) -> Result<()> {
        let mut statement = sqlx::query(query).bind(self.id).bind(self.lease);
        if let Some(reason) = reason {
            statement = statement.bind(reason);
        }
        let outcome = statement.execute(&self.pool).await.map_err(pg_error)?;
        // Settled, or not ours any more: either way no longer held.
        self.settled = true;
        self.held.let_go(self.lease);
        if outcome.rows_affected() == 0 {
            return Err(Error::NotOwned {
                what: format!("message {} of queue {}", self.id, self.queue),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Acknowledger for Acker {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.settle(ACK, None).await
    }

    async fn nack(self: Box<Self>) -> Result<()> {
        self.settle(NACK, None).await
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<()> {
        self.settle(DEAD_LETTER, Some(reason)).await
    }
}

impl Drop for Acker {
    /// Unsettled: handed back in the background (else it comes back when
    /// its visibility timeout runs out).
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.held.let_go(self.lease);
        let (pool, id, lease) = (self.pool.clone(), self.id, self.lease);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = sqlx::query(NACK).bind(id).bind(lease).execute(&pool).await {
                    tracing::debug!(id, %error, "handing back a dropped delivery failed; it comes back after its timeout");
                }
            });
        }
    }
}
