//! Throughput of the Redis backends on one connection, against a real
//! server: progress updates of one task, one-step task lifecycles, and the
//! Redis share of a one-step task run end to end (lock, state, progress).
//!
//! ```text
//! cargo run -p dtask-redis --release --example progress_bench [-- redis://127.0.0.1:6379]
//! ```
//!
//! Keys go under a fresh prefix that is deleted at the end.

use std::time::{Duration, Instant};

use dtask_core::infra::{DistributedLock, ProgressTracker, SagaStateStore, StoredState};
use dtask_core::progress::TaskProgress;
use dtask_core::task::{Mode, StepHost, TaskDefinition};
use dtask_core::{Codec, EventKind, Format, TaskEvent, TaskId};
use dtask_redis::{RedisBackends, RedisConfig};
use futures::{StreamExt, TryStreamExt, stream};
use time::OffsetDateTime;

static DEFINITION: TaskDefinition = TaskDefinition {
    name: "Bench",
    queue: "bench",
    max_retries: 0,
    timeout: Duration::from_secs(60),
    mode: Mode::Distributed,
    format: Format::Json,
    cancellable: true,
    required_roles: &[],
    encrypt_messages: false,
    version: 1,
    steps: &[],
    groups: &[],
    depends_on: &[],
};

/// Tasks in flight at once in the concurrent measurements.
const IN_FLIGHT: usize = 256;

fn task() -> TaskProgress {
    TaskProgress::new(TaskId::new(), &DEFINITION, OffsetDateTime::now_utc())
}

fn after(progress: &TaskProgress, kind: EventKind) -> TaskProgress {
    let mut next = progress.clone();
    next.apply(&TaskEvent {
        task_id: progress.task_id,
        at: OffsetDateTime::now_utc(),
        kind,
    });
    next
}

fn started(progress: &TaskProgress) -> TaskProgress {
    after(progress, EventKind::Started { host: StepHost::Worker })
}

fn report(what: &str, count: usize, elapsed: Duration) {
    let rate = count as f64 / elapsed.as_secs_f64();
    let micros = elapsed.as_micros() as f64 / count as f64;
    println!("{what:<58} {count:>7} in {elapsed:>10.2?}  {rate:>9.0}/s  {micros:>7.1} µs each");
}

/// Updates of one task, each awaited before the next.
async fn sequential_updates(backends: &RedisBackends, count: usize) -> dtask_core::Result<()> {
    let tracker = backends.progress();
    let mut progress = task();
    tracker.init(&progress).await?;
    let start = Instant::now();
    for _ in 0..count {
        progress = started(&progress);
        tracker.update(&progress).await?;
    }
    report("updates of one task, one at a time", count, start.elapsed());
    Ok(())
}

/// Updates of one task, 64 in flight on the multiplexed connection.
async fn pipelined_updates(backends: &RedisBackends, count: usize) -> dtask_core::Result<()> {
    let tracker = backends.progress();
    let first = task();
    tracker.init(&first).await?;
    let mut snapshots = Vec::with_capacity(count);
    let mut progress = first.clone();
    for _ in 0..count {
        progress = started(&progress);
        snapshots.push(progress.clone());
    }
    let start = Instant::now();
    stream::iter(snapshots.iter().map(|p| tracker.update(p)))
        .buffered(64)
        .try_collect::<Vec<()>>()
        .await?;
    let elapsed = start.elapsed();
    let stored = tracker.get(first.task_id).await?.map_or(0, |p| p.revision);
    report("updates of one task, 64 in flight", count, elapsed);
    println!("    (the last stored revision is {stored} of {count}: none lost or reordered)");
    Ok(())
}

/// A one-step task's progress: init, four updates, complete.
async fn lifecycle(tracker: &dyn ProgressTracker) -> dtask_core::Result<()> {
    let mut progress = task();
    tracker.init(&progress).await?;
    for _ in 0..4 {
        progress = started(&progress);
        tracker.update(&progress).await?;
    }
    tracker.complete(&after(&progress, EventKind::Completed)).await
}

/// What a one-step task asks of Redis when it runs end to end: progress
/// (init, four updates, complete), the worker's lock (acquire, release) and
/// saga state (the hand-off, one step, the final state).
async fn end_to_end(backends: &RedisBackends) -> dtask_core::Result<()> {
    let (tracker, lock, state) = (backends.progress(), backends.lock(), backends.state());
    let mut progress = task();
    let id = progress.task_id;
    tracker.init(&progress).await?;
    let payload = Codec::default().encode(&progress)?;
    state
        .save(
            id,
            StoredState {
                fence: 0,
                payload: payload.clone(),
            },
        )
        .await?;
    let guard = lock.try_acquire(&format!("task:{id}"), Duration::from_secs(30)).await?;
    let fence = guard.as_ref().map_or(0, |g| g.fencing_token());
    for _ in 0..4 {
        progress = started(&progress);
        tracker.update(&progress).await?;
    }
    state
        .save(
            id,
            StoredState {
                fence,
                payload: payload.clone(),
            },
        )
        .await?;
    state.save(id, StoredState { fence, payload }).await?;
    tracker.complete(&after(&progress, EventKind::Completed)).await?;
    if let Some(guard) = guard {
        guard.release().await?;
    }
    Ok(())
}

async fn concurrently<F, Fut>(what: &str, count: usize, run: F) -> dtask_core::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = dtask_core::Result<()>>,
{
    let start = Instant::now();
    stream::iter((0..count).map(|_| run()))
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    report(what, count, start.elapsed());
    Ok(())
}

async fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("dtask-bench:{}:", uuid::Uuid::new_v4().simple());
    let config = RedisConfig::new(&url)
        .with_key_prefix(&prefix)
        .with_progress_expiry(Some(Duration::from_secs(120)));
    let backends = config.connect().await?;
    println!("Redis at {url}, one command connection, {IN_FLIGHT} tasks in flight where concurrent\n");

    sequential_updates(&backends, 5_000).await?;
    pipelined_updates(&backends, 20_000).await?;
    let tracker = backends.progress();
    concurrently("one-step task progress (init, 4 updates, complete)", 20_000, || {
        lifecycle(&tracker)
    })
    .await?;
    concurrently(
        "one-step task end to end (progress, lock, 3 state saves)",
        20_000,
        || end_to_end(&backends),
    )
    .await?;

    delete_prefix(&url, &prefix).await?;
    Ok(())
}
