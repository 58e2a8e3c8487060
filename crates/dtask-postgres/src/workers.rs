//! Workers announcing themselves: one row per worker, with an expiry.

use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::{WorkerInfo, WorkerRegistry};
use dtask_core::{Error, Result};
use sqlx::PgPool;

use crate::error::{BACKEND, millis, pg_error};

const HEARTBEAT: &str = "
INSERT INTO dtask_workers (id, info, expires_at)
VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
ON CONFLICT (id) DO UPDATE SET info = EXCLUDED.info, expires_at = EXCLUDED.expires_at";

/// Lists the live workers after deleting the expired ones.
const LIST: &str = "
WITH expired AS (DELETE FROM dtask_workers WHERE expires_at <= clock_timestamp())
SELECT info FROM dtask_workers WHERE expires_at > clock_timestamp() ORDER BY id";

/// [`WorkerRegistry`] on PostgreSQL (table `dtask_workers`, the worker's
/// JSON [`WorkerInfo`] per row).
#[derive(Debug, Clone)]
pub struct PostgresWorkerRegistry {
    pool: PgPool,
}

impl PostgresWorkerRegistry {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl WorkerRegistry for PostgresWorkerRegistry {
    async fn heartbeat(&self, worker: &WorkerInfo, ttl: Duration) -> Result<()> {
        let info = serde_json::to_string(worker).map_err(|e| Error::backend(BACKEND, e))?;
        sqlx::query(HEARTBEAT)
            .bind(&worker.id)
            .bind(info)
            .bind(millis(ttl))
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(pg_error)
    }

    async fn deregister(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM dtask_workers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(pg_error)
    }

    /// # Errors
    /// [`Error::Backend`] when a row is not a worker's JSON.
    async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let rows: Vec<String> = sqlx::query_scalar(LIST).fetch_all(&self.pool).await.map_err(pg_error)?;
        rows.iter()
            .map(|info| serde_json::from_str(info).map_err(|e| Error::backend(BACKEND, e)))
            .collect()
    }
}
