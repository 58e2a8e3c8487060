//! The raw PostgreSQL baseline: a table used as a queue the textbook way,
//! as a hand-written job queue would. Producers insert one row per message
//! (each insert its own transaction); consumers take one row at a time
//! with `DELETE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)`,
//! polling when the table is empty. No leases, no notifications, no
//! dead letters: what the database itself can carry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// How many producers and consumers run at once.
pub(crate) const WORKERS: usize = 8;

/// Publishes and consumes `n` messages of 200 bytes through a fresh table
/// (dropped afterwards); returns the time from the first insert to the
/// last delete.
///
/// # Errors
/// A database error.
pub(crate) async fn run(pool: &PgPool, n: usize) -> anyhow::Result<Duration> {
    let table = format!("dtask_bench_raw_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!(
        "CREATE TABLE {table} (id bigserial PRIMARY KEY, body bytea NOT NULL)"
    ))
    .execute(pool)
    .await?;
    let insert = format!("INSERT INTO {table} (body) VALUES ($1)");
    let take = format!(
        "DELETE FROM {table} WHERE id = (SELECT id FROM {table} ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id"
    );
    let published = Arc::new(AtomicUsize::new(0));
    let consumed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (producer_pool, insert, published) = (pool.clone(), insert.clone(), Arc::clone(&published));
        tasks.spawn(async move {
            let body = vec![7u8; 200];
            while published.fetch_add(1, Ordering::Relaxed) < n {
                sqlx::query(&insert).bind(&body).execute(&producer_pool).await?;
            }
            anyhow::Ok(())
        });
        let (pool, take, consumed) = (pool.clone(), take.clone(), Arc::clone(&consumed));
        tasks.spawn(async move {
            while consumed.load(Ordering::Relaxed) < n {
                let taken: Option<i64> = sqlx::query_scalar(&take).fetch_optional(&pool).await?;
                match taken {
                    Some(_) => {
                        consumed.fetch_add(1, Ordering::Relaxed);
                    }
                    None => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let elapsed = started.elapsed();
    sqlx::query(&format!("DROP TABLE {table}")).execute(pool).await?;
    Ok(elapsed)
}

/// Transactions committed in the current database so far (statistics are
/// flushed by each backend within a second or so of its transactions).
///
/// # Errors
/// A database error.
pub(crate) async fn commits(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            .fetch_one(pool)
            .await?,
    )
}
