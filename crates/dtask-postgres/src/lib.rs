//! dtask's backends on PostgreSQL: one database instead of a broker and a
//! cache.
//!
//! [`PostgresConfig::connect`] opens a connection pool and applies the
//! embedded migrations (`migrations/`, under sqlx's advisory lock, so
//! processes starting together are safe). [`PostgresBackends`] then hands
//! out:
//!
//! | backend | trait | how |
//! |---|---|---|
//! | [`PostgresQueue`] | `QueuePublisher`, `QueueConsumer`, `DeadLetters` | rows claimed with `FOR UPDATE SKIP LOCKED` under a lease that a held delivery renews; `LISTEN`/`NOTIFY` wakes consumers |
//! | [`PostgresStateStore`] | `SagaStateStore` | one row per task, saved only with a fencing token at least the stored one |
//! | [`PostgresLock`] | `DistributedLock` | one row per resource with an expiry; tokens from a sequence |
//! | [`PostgresIdempotencyStore`] | `IdempotencyStore` | one row per key with an expiry |
//! | [`PostgresTaskHistory`] | `TaskHistory` | task rows, step attempts, condition snapshots and the audit log; a batch is one transaction |
//! | [`PostgresProgressTracker`] | `ProgressTracker` | the latest snapshot per task, a log of changes that streams read, `NOTIFY` to wake them |
//!
//! Every one passes dtask's conformance suite against a real server
//! (`tests/conformance_postgres.rs`). Times are the server's
//! (`clock_timestamp()`), so the processes' clocks never matter.

mod config;
mod error;
mod history;
mod idempotency;
mod lock;
mod progress;
mod queue;
mod state;
mod workers;

pub use config::{PostgresBackends, PostgresConfig};
pub use history::PostgresTaskHistory;
pub use idempotency::PostgresIdempotencyStore;
pub use lock::PostgresLock;
pub use progress::PostgresProgressTracker;
pub use queue::PostgresQueue;
pub use state::PostgresStateStore;
pub use workers::PostgresWorkerRegistry;
