//! Idempotency keys: one row per key, with an expiry.

use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::{IdempotencyRecord, IdempotencyStore};
use dtask_core::{Error, Result, TaskId};
use sqlx::PgPool;

use crate::error::{millis, pg_error};

/// Claims a free or expired key; returns the row when the claim is ours.
const CLAIM: &str = "
INSERT INTO dtask_idempotency (key, task_id, fingerprint, expires_at)
VALUES ($1, $2, NULL, clock_timestamp() + $3 * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE
    SET task_id = EXCLUDED.task_id, fingerprint = NULL, expires_at = EXCLUDED.expires_at
    WHERE dtask_idempotency.expires_at <= clock_timestamp()
RETURNING task_id";

/// [`IdempotencyStore`] on PostgreSQL (table `dtask_idempotency`). Expired
/// keys are claimed over; nothing else reads them.
#[derive(Debug, Clone)]
pub struct PostgresIdempotencyStore {
    pool: PgPool,
}

impl PostgresIdempotencyStore {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl IdempotencyStore for PostgresIdempotencyStore {
    async fn claim(&self, key: &str, task_id: TaskId, ttl: Duration) -> Result<Option<IdempotencyRecord>> {
        // A claim that loses reads the winner; if the winner's key expired
        // in between, claim again.
        loop {
            let ours: Option<uuid::Uuid> = sqlx::query_scalar(CLAIM)
                .bind(key)
                .bind(*task_id.as_uuid())
                .bind(millis(ttl))
                .fetch_optional(&self.pool)
                .await
                .map_err(pg_error)?;
            if ours.is_some() {
                return Ok(None);
            }
            let existing: Option<(uuid::Uuid, Option<String>)> = sqlx::query_as(
                "SELECT task_id, fingerprint FROM dtask_idempotency
                 WHERE key = $1 AND expires_at > clock_timestamp()",
            )
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?;
            if let Some((task_id, fingerprint)) = existing {
                return Ok(Some(IdempotencyRecord {
                    task_id: task_id.into(),
                    fingerprint,
                }));
            }
        }
    }

    async fn finish(&self, key: &str, fingerprint: &str) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE dtask_idempotency SET fingerprint = $2
             WHERE key = $1 AND expires_at > clock_timestamp()",
        )
        .bind(key)
        .bind(fingerprint)
        .execute(&self.pool)
        .await
        .map_err(pg_error)?;
        if updated.rows_affected() == 0 {
            return Err(Error::not_found(format!("idempotency key `{key}`")));
        }
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM dtask_idempotency WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(pg_error)
    }

    async fn ping(&self) -> Result<()> {
        crate::config::ping(&self.pool).await
    }
}
