//! apalis 1.0 on apalis-redis: the Rust peer, on the same Redis, in this
//! process (producer and worker), as dtask's case runs its host with
//! workers in-process. The job is trivial (it returns its input); the
//! worker runs `concurrency` jobs at once (`concurrency` + `parallelize`,
//! as apalis's README shows) and fetches as many per poll. A job counts as
//! completed when apalis has recorded it done (its `tasks:{queue}:done`
//! event, published by the script that acks it), as BullMQ's `completed`
//! event and dtask's `Completed` event come after their saves.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

use super::Load;
use crate::distributed::deploy::delete_keys;

/// apalis's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ping {
    n: usize,
}

/// The completions apalis announces, as the producer counts them.
#[derive(Debug)]
struct Completions {
    /// Jobs completed so far.
    count: AtomicUsize,
    /// Jobs of the run.
    n: usize,
    /// Fires when the last one completed.
    all: Notify,
    /// One permit per job that may be submitted (the window).
    slots: Semaphore,
}

impl Completions {
    /// Counts one, and frees its slot.
    fn one(&self) {
        self.slots.add_permits(1);
        if self.count.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            self.all.notify_one();
        }
    }
}

async fn ping(job: Ping) -> Result<usize, BoxDynError> {
    Ok(job.n)
}

/// Runs `n` jobs through a fresh queue under `load`, `concurrency` at once
/// (and, in the window case, from `submitters` loops): the time from the
/// first push to the last completion.
///
/// # Errors
/// Redis errors, or a run that does not end within `timeout`.
pub(super) async fn run(
    redis_url: &str,
    (n, concurrency, submitters): (usize, usize, usize),
    load: Load,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let queue = format!("dtask-bench-apalis-{}", uuid::Uuid::new_v4().simple());
    let conn = apalis_redis::connect(redis_url)
        .await
        .context("apalis connecting to Redis")?;
    let config = Config::default().queue(&queue).batch_size(concurrency.max(1));
    let storage: RedisStorage<Ping> = RedisStorage::new(conn).with_config(config);
    let window = match load {
        Load::Bulk => n,
        Load::Window(window) => window,
    };
    let completions = Arc::new(Completions {
        count: AtomicUsize::new(0),
        n,
        all: Notify::new(),
        slots: Semaphore::new(window),
    });
    let client = redis::Client::open(redis_url)?;
    let mut done = client.get_async_pubsub().await?;
    done.subscribe(format!("tasks:{}", storage.get_config().done_jobs_set()))
        .await?;
    let counter = {
        let completions = Arc::clone(&completions);
        let mut done = done.into_on_message();
        tokio::spawn(async move {
            while done.next().await.is_some() {
                completions.one();
            }
        })
    };
    let worker = WorkerBuilder::new(format!("{queue}-worker"))
        .backend(storage.clone())
        .concurrency(concurrency.max(1))
        .parallelize(tokio::spawn)
        .build(ping);
    let mut worker = tokio::spawn(worker.run());

    let started = Instant::now();
    let submitted = async {
        match load {
            Load::Bulk => {
                let mut sink = storage.clone();
                let jobs: Vec<Ping> = (0..n).map(|n| Ping { n }).collect();
                for chunk in jobs.chunks(1000) {
                    sink.push_bulk(chunk.to_vec())
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                anyhow::Ok(())
            }
            Load::Window(_) => {
                let next = Arc::new(AtomicUsize::new(0));
                let loops = (0..submitters.max(1)).map(|_| {
                    let (mut sink, next, completions) = (storage.clone(), Arc::clone(&next), Arc::clone(&completions));
                    async move {
                        loop {
                            let index = next.fetch_add(1, Ordering::SeqCst);
                            if index >= n {
                                return anyhow::Ok(());
                            }
                            completions.slots.acquire().await?.forget();
                            sink.push(Ping { n: index }).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                        }
                    }
                });
                futures::future::try_join_all(loops).await.map(drop)
            }
        }
    };
    let ran = tokio::time::timeout(timeout, async {
        let finished = async {
            submitted.await?;
            completions.all.notified().await;
            anyhow::Ok(started.elapsed())
        };
        tokio::select! {
            finished = finished => finished,
            // apalis stops its worker when a poll fails (it did with 10,000
            // jobs waiting: its fetch script unpacks too many results).
            stopped = &mut worker => anyhow::bail!("the apalis worker stopped: {stopped:?}"),
        }
    })
    .await;
    worker.abort();
    counter.abort();
    let mut cleanup = client.get_multiplexed_async_connection().await?;
    delete_keys(&mut cleanup, &queue).await?;
    match ran {
        Ok(ran) => ran.with_context(|| {
            let count = completions.count.load(Ordering::SeqCst);
            format!("apalis completed {count} of {n} jobs")
        }),
        Err(_) => anyhow::bail!(
            "apalis completed {} of {n} jobs in {} s",
            completions.count.load(Ordering::SeqCst),
            timeout.as_secs()
        ),
    }
}
