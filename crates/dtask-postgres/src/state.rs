//! The saga state store: one row per task, fenced writes.

use async_trait::async_trait;
use bytes::Bytes;
use dtask_core::infra::{SagaStateStore, StoredState};
use dtask_core::{Error, Format, Payload, Result, TaskId};
use sqlx::PgPool;

use crate::error::pg_error;

/// Saves a task's state unless a larger fencing token saved before; returns
/// the row when it was written.
const SAVE: &str = "
INSERT INTO dtask_state (task_id, fence, format, bytes) VALUES ($1, $2, $3, $4)
ON CONFLICT (task_id) DO UPDATE
    SET fence = EXCLUDED.fence, format = EXCLUDED.format, bytes = EXCLUDED.bytes,
        updated_at = clock_timestamp()
    WHERE dtask_state.fence <= EXCLUDED.fence
RETURNING fence";

/// [`SagaStateStore`] on PostgreSQL (table `dtask_state`).
#[derive(Debug, Clone)]
pub struct PostgresStateStore {
    pool: PgPool,
}

impl PostgresStateStore {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A fencing token as the database stores it (bigint).
fn fence_to_db(fence: u64) -> i64 {
    i64::try_from(fence).unwrap_or(i64::MAX)
}

fn fence_from_db(fence: i64) -> u64 {
    u64::try_from(fence).unwrap_or_default()
}

#[async_trait]
impl SagaStateStore for PostgresStateStore {
    /// # Errors
    /// [`Error::Fenced`] when a larger fencing token saved before;
    /// [`Error::Unsupported`] for an in-memory payload.
    async fn save(&self, task_id: TaskId, state: StoredState) -> Result<()> {
        let (format, bytes) = state.payload.encoded()?;
        let task = *task_id.as_uuid();
        let written: Option<i64> = sqlx::query_scalar(SAVE)
            .bind(task)
            .bind(fence_to_db(state.fence))
            .bind(format.name())
            .bind(&bytes[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?;
        if written.is_some() {
            return Ok(());
        }
        let current: Option<i64> = sqlx::query_scalar("SELECT fence FROM dtask_state WHERE task_id = $1")
            .bind(task)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?;
        Err(Error::Fenced {
            presented: state.fence,
            current: current.map_or(u64::MAX, fence_from_db),
        })
    }

    async fn load(&self, task_id: TaskId) -> Result<Option<StoredState>> {
        let task = *task_id.as_uuid();
        let row: Option<(i64, String, Vec<u8>)> =
            sqlx::query_as("SELECT fence, format, bytes FROM dtask_state WHERE task_id = $1")
                .bind(task)
                .fetch_optional(&self.pool)
                .await
                .map_err(pg_error)?;
        let Some((fence, format, bytes)) = row else {
            return Ok(None);
        };
        let format: Format = format
            .parse()
            .map_err(|e| Error::invalid("stored format", format!("`{format}`: {e}")))?;
        Ok(Some(StoredState {
            fence: fence_from_db(fence),
            payload: Payload::Encoded {
                format,
                bytes: Bytes::from(bytes),
            },
        }))
    }

    async fn delete(&self, task_id: TaskId) -> Result<()> {
        let task = *task_id.as_uuid();
        sqlx::query("DELETE FROM dtask_state WHERE task_id = $1")
            .bind(task)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(pg_error)
    }

    async fn ping(&self) -> Result<()> {
        crate::config::ping(&self.pool).await
    }
}
