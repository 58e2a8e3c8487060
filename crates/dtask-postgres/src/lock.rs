//! The lock: one row per resource, leases that expire by the server's
//! clock, fencing tokens from a sequence.

use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::{DistributedLock, LockGuard, LockLease};
use dtask_core::{Error, Result};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{millis, pg_error};

/// Grants the lease when the resource is free or its lease ran out.
const ACQUIRE: &str = "
INSERT INTO dtask_locks (resource, holder, token, expires_at)
VALUES ($1, $2, nextval('dtask_lock_tokens'), clock_timestamp() + $3 * interval '1 millisecond')
ON CONFLICT (resource) DO UPDATE
    SET holder = EXCLUDED.holder, token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
    WHERE dtask_locks.expires_at <= clock_timestamp()
RETURNING token";

const EXTEND: &str = "
UPDATE dtask_locks SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
WHERE resource = $1 AND holder = $2 AND expires_at > clock_timestamp()";

const RELEASE: &str = "DELETE FROM dtask_locks WHERE resource = $1 AND holder = $2";

/// [`DistributedLock`] on PostgreSQL (table `dtask_locks`).
///
/// One database is one authority: there is no quorum to lose, and the
/// server's clock (`clock_timestamp()`) judges every expiry.
#[derive(Debug, Clone)]
pub struct PostgresLock {
    pool: PgPool,
}

impl PostgresLock {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl DistributedLock for PostgresLock {
    async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Option<LockGuard>> {
        if ttl.is_zero() {
            return Err(Error::invalid("ttl", "a lock's time-to-live must be above zero"));
        }
        let holder = Uuid::new_v4();
        let token: Option<i64> = sqlx::query_scalar(ACQUIRE)
            .bind(resource)
            .bind(holder)
            .bind(millis(ttl))
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(token.map(|token| {
            LockGuard::new(Lease {
                pool: self.pool.clone(),
                resource: resource.to_owned(),
                holder,
                token: u64::try_from(token).unwrap_or_default(),
                released: false,
            })
        }))
    }

    async fn ping(&self) -> Result<()> {
        crate::config::ping(&self.pool).await
    }
}

struct Lease {
    pool: PgPool,
    resource: String,
    holder: Uuid,
    token: u64,
    released: bool,
}

#[async_trait]
impl LockLease for Lease {
    fn resource(&self) -> &str {
        &self.resource
    }

    fn fencing_token(&self) -> u64 {
        self.token
    }

    async fn extend(&self, ttl: Duration) -> Result<()> {
        let extended = sqlx::query(EXTEND)
            .bind(&self.resource)
            .bind(self.holder)
            .bind(millis(ttl))
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        if extended.rows_affected() == 0 {
            return Err(Error::LockLost {
                resource: self.resource.clone(),
            });
        }
        Ok(())
    }

    async fn release(&mut self) -> Result<()> {
        sqlx::query(RELEASE)
            .bind(&self.resource)
            .bind(self.holder)
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        self.released = true;
        Ok(())
    }
}

impl Drop for Lease {
    /// Releases in the background (it would expire anyway).
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (pool, resource, holder) = (self.pool.clone(), std::mem::take(&mut self.resource), self.holder);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = sqlx::query(RELEASE).bind(&resource).bind(holder).execute(&pool).await {
                    tracing::debug!(resource, %error, "releasing a dropped lock failed; it will expire");
                }
            });
        }
    }
}
