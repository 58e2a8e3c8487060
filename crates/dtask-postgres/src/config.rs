//! Connecting: the pool, the migrations, and the backends sharing them.

use std::fmt;
use std::time::Duration;

use dtask_core::infra::redact_url;
use dtask_core::{Error, Result};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::error::{BACKEND, pg_error};
use crate::{
    PostgresIdempotencyStore, PostgresLock, PostgresProgressTracker, PostgresQueue, PostgresStateStore,
    PostgresTaskHistory, PostgresWorkerRegistry,
};

/// Where the database is and how to talk to it.
///
/// ```no_run
/// # async fn demo() -> dtask_core::Result<()> {
/// use dtask_postgres::PostgresConfig;
///
/// let backends = PostgresConfig::new("postgres://dtask:secret@127.0.0.1/dtask").connect().await?;
/// let (state, lock) = (backends.state(), backends.lock());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresConfig {
    url: String,
    max_connections: u32,
    connect_timeout: Duration,
    visibility_timeout: Duration,
    poll_interval: Duration,
}

impl PostgresConfig {
    /// A configuration for the database at `url`
    /// (`postgres://user:password@host:port/database`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            visibility_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
        }
    }

    /// The pool's size (default 16). Each consumer of a queue also holds one
    /// connection of its own for `LISTEN`.
    #[must_use]
    pub fn with_max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How long connecting may take (default 5 s).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a delivered message stays invisible to other consumers
    /// without its consumer renewing it (default 30 s): a consumer that
    /// died gives its messages back after this long. A live consumer renews
    /// every third of it for as long as it holds the delivery.
    #[must_use]
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout.max(Duration::from_millis(300));
        self
    }

    /// How often an idle queue consumer or progress stream looks again
    /// without being woken: for messages whose visibility timeout ran out,
    /// or after a missed notification (default 1 s). New messages and
    /// progress changes wake them at once through `NOTIFY`.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The database URL, its password redacted.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Opens the pool and applies the migrations.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the (redacted) URL when the server cannot
    /// be reached in time or a migration fails.
    pub async fn connect(&self) -> Result<PostgresBackends> {
        let unreachable = |error: sqlx::Error| {
            Error::backend(
                BACKEND,
                format!("cannot reach PostgreSQL at {}: {error}", self.redacted_url()),
            )
        };
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.connect_timeout)
            .connect(&self.url)
            .await
            .map_err(unreachable)?;
        let mut migrator = sqlx::migrate!("./migrations");
        // A process of an older version (a rolling deploy, a rollback) runs
        // on a schema a newer one migrated: migrations only ever add.
        migrator.set_ignore_missing(true);
        migrator
            .run(&pool)
            .await
            .map_err(|error| Error::backend(BACKEND, format!("the dtask migrations failed: {error}")))?;
        Ok(PostgresBackends {
            pool,
            config: self.clone(),
        })
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url())
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

/// A connected pool and the backends on it; cheap to clone.
#[derive(Clone)]
pub struct PostgresBackends {
    pool: PgPool,
    config: PostgresConfig,
}

impl PostgresBackends {
    /// The saga state store.
    pub fn state(&self) -> PostgresStateStore {
        PostgresStateStore::new(self.pool.clone())
    }

    /// The idempotency store.
    pub fn idempotency(&self) -> PostgresIdempotencyStore {
        PostgresIdempotencyStore::new(self.pool.clone())
    }

    /// The registry where workers announce themselves.
    pub fn workers(&self) -> PostgresWorkerRegistry {
        PostgresWorkerRegistry::new(self.pool.clone())
    }

    /// The lock.
    pub fn lock(&self) -> PostgresLock {
        PostgresLock::new(self.pool.clone())
    }

    /// The progress tracker.
    pub fn progress(&self) -> PostgresProgressTracker {
        PostgresProgressTracker::new(self.pool.clone(), self.config.poll_interval)
    }

    /// The task history.
    pub fn history(&self) -> PostgresTaskHistory {
        PostgresTaskHistory::new(self.pool.clone())
    }

    /// The work queue, its consumer side and its dead letters.
    pub fn queue(&self) -> PostgresQueue {
        PostgresQueue::new(
            self.pool.clone(),
            self.config.visibility_timeout,
            self.config.poll_interval,
        )
    }

    /// The pool, for a caller's own queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Checks that the server answers.
    ///
    /// # Errors
    /// [`Error::Backend`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        ping(&self.pool).await
    }
}

impl fmt::Debug for PostgresBackends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackends")
            .field("config", &self.config)
            .finish()
    }
}

/// `SELECT 1`.
pub(crate) async fn ping(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop).map_err(pg_error)
}
