//! The chaos test (SPEC section 6, issue 6): one API and three workers of
//! `examples/chaos_node.rs` on RabbitMQ, Redis and S3 (and again on
//! PostgreSQL and S3 alone, one run after the other); 200 tasks submitted
//! over HTTP; while they run, a random worker is killed with SIGKILL every
//! 2 to 3 s and a new one started. Then:
//!
//! - every task ends completed;
//! - each Worker step of each task applied its side effect exactly once
//!   (its ledger entry, keyed by the step's idempotency key; raw
//!   re-executions of a body whose completion was never recorded are
//!   counted, not failed), no two runs of one step overlapped in time, and
//!   each task has exactly its objects in the buckets;
//! - after reconciliation (grace 0) no object in the buckets belongs to a
//!   task that did not complete.
//!
//! It prints one summary line (`chaos: submitted=... completed=...`) on
//! stderr, past the test harness's capture. The longest delay a kill added
//! is the largest *stall* of a task a kill touched: the time from its
//! first Worker step's start to its last step's end, less the time of the
//! step runs that counted (lost work, waiting for the dead worker's lock
//! to expire, redelivery and snapshot saves). `median_stall_ms` is the
//! same figure for the tasks no kill touched.
//!
//! `CHAOS_SEED` replays a kill schedule; `CHAOS_NODE_LOG` sets the nodes'
//! `RUST_LOG` (default `warn`). The nodes' logs are kept when it fails,
//! or always with `CHAOS_KEEP_LOGS=1`.

mod cluster;
#[path = "chaos/figures.rs"]
mod figures;
#[path = "chaos/ledger.rs"]
mod ledger;
#[path = "chaos/nodes.rs"]
mod nodes;
#[path = "chaos/services.rs"]
mod services;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dtask::infra::ProgressTracker;
use dtask::{TaskId, TaskProgress};
use figures::{Figures, Kill};
use futures::StreamExt;
use ledger::Ledger;
use nodes::{LogDir, Node, NodeEnv};
use services::Services;

const TASKS: usize = 200;
const WORKERS: usize = 3;
/// Submissions in flight at once.
const IN_FLIGHT: usize = 8;
/// A worker is killed every 2 to 3 s.
const KILL_EVERY_MS: (u64, u64) = (2_000, 3_000);
/// Every task must have ended this long after the first submission.
const DEADLINE: Duration = Duration::from_secs(75);

/// The ids of the tasks submitted so far (for the clean-up, whatever
/// happens).
type Submitted = Arc<Mutex<Vec<TaskId>>>;

/// One chaos run at a time: each loads both cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tasks_complete_exactly_once_while_workers_are_killed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    cluster::require("RabbitMQ", "127.0.0.1:5672");
    chaos(false).await;
}

/// The same on the PostgreSQL-only combination: queue, state, progress,
/// locks and idempotency keys in PostgreSQL (the ledger, the test's own
/// instrument, stays in Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgres_alone() {
    let _turn = ONE_AT_A_TIME.lock().await;
    cluster::require("PostgreSQL", "127.0.0.1:5432");
    chaos(true).await;
}

/// Runs the chaos on RabbitMQ and Redis, or on PostgreSQL alone.
async fn chaos(postgres: bool) {
    cluster::require("Redis", "127.0.0.1:6379");
    let binary = nodes::chaos_node_binary();
    let s3 = cluster::S3Server::find_or_start();
    let logs = LogDir::new();
    let run = format!("chaos-{:x}{:x}", std::process::id(), now_ms());
    let env = Arc::new(NodeEnv {
        binary,
        namespace: run.clone(),
        key_prefix: format!("{run}:"),
        s3_endpoint: s3.endpoint.clone(),
        log_dir: logs.path().to_path_buf(),
        postgres: postgres.then(services::database_url),
    });
    let services = Arc::new(Services::connect(&env).await);
    let redis_before = services.redis_run_id().await;
    let submitted = Submitted::default();
    let joined = tokio::spawn(chaos_run(
        Arc::clone(&env),
        Arc::clone(&services),
        Arc::clone(&submitted),
    ))
    .await;
    let tasks: HashSet<String> = lock(&submitted).iter().map(TaskId::to_string).collect();
    services.clean_up(&env, &tasks).await;
    let mut context = logs.digest();
    if services.redis_run_id().await != redis_before {
        context.push_str("\nRedis restarted during the run (another process restarted it?)");
    }
    let figures = match joined {
        Ok(Ok(figures)) => figures,
        Ok(Err(failure)) => panic!("{failure}\n{context}"),
        Err(panicked) => {
            eprintln!("{context}");
            std::panic::resume_unwind(panicked.into_panic())
        }
    };
    let _ = writeln!(std::io::stderr().lock(), "{}", figures.summary());
    if let Err(failure) = figures.check(TASKS) {
        panic!("{failure}\n{}\n{context}", figures.summary());
    }
}

/// Runs the chaos and measures what it did.
async fn chaos_run(env: Arc<NodeEnv>, services: Arc<Services>, submitted: Submitted) -> Result<Figures, String> {
    let api = env.start("api", "api").await;
    let url = api
        .first_line
        .strip_prefix("Api: ")
        .unwrap_or_else(|| panic!("unexpected first line: {}", api.first_line))
        .to_owned();
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        workers.push(env.start("worker", &format!("worker-{i}")).await);
    }
    let mut kills = Vec::new();
    let mut rng = Rng::seeded();
    let started = Instant::now();
    let work = async {
        let ids = submit_all(&url, &submitted).await;
        let ended = wait_all(&*services.progress, &ids, started + DEADLINE).await;
        (ids, ended)
    };
    let (ids, ended) = tokio::select! {
        done = work => done,
        () = kill_workers(&env, &mut workers, &mut kills, &mut rng) => unreachable!("the kills go on until the tasks end"),
    };
    let run = started.elapsed();
    for node in workers.into_iter().chain([api]) {
        node.kill().await;
    }
    let tasks: Vec<String> = ids.iter().map(TaskId::to_string).collect();
    let ledger = Ledger::read(
        &mut services.redis().await,
        &format!("{}ledger:", env.key_prefix),
        &tasks,
    )
    .await;
    let ended = match ended {
        Ok(ended) => ended,
        Err(stuck) => return Err(describe_stuck(&stuck, &services, &ledger, &kills, rng.seed).await),
    };
    let mut figures = Figures::new(ids.len(), kills.len(), run, rng.seed);
    figures.count_outcomes(&ended);
    figures.count_effects(&ended, &ledger);
    figures.count_timings(&ledger, &kills);
    figures.count_objects(&ended, &services).await;
    figures.reconcile(&ended, &services).await;
    Ok(figures)
}

/// Submits the tasks over HTTP (multipart, one small file each).
async fn submit_all(url: &str, submitted: &Submitted) -> Vec<TaskId> {
    let http = reqwest::Client::new();
    futures::stream::iter(0..TASKS)
        .map(|i| submit_one(&http, url, i))
        .buffer_unordered(IN_FLIGHT)
        .inspect(|id| lock(submitted).push(*id))
        .collect()
        .await
}

async fn submit_one(http: &reqwest::Client, url: &str, i: usize) -> TaskId {
    let file =
        reqwest::multipart::Part::bytes(format!("chaos input {i}\n").into_bytes()).file_name(format!("input-{i}.txt"));
    let form = reqwest::multipart::Form::new()
        .text("label", format!("task-{i}"))
        .part("files", file);
    let response = http
        .post(format!("{url}/api/tasks/chaos-task"))
        .multipart(form)
        .send()
        .await
        .expect("the API answers");
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("a JSON answer");
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "submission {i}: {body}");
    body["taskId"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("submission {i}: no task id in {body}"))
}

/// Follows every task's progress stream to its terminal snapshot (the
/// tracker ends a stream after it); by `deadline`, returns the tasks that
/// have not ended, with their last known snapshot.
async fn wait_all(
    progress: &dyn ProgressTracker,
    ids: &[TaskId],
    deadline: Instant,
) -> Result<HashMap<TaskId, TaskProgress>, Vec<(TaskId, Option<TaskProgress>)>> {
    let followed = futures::stream::iter(ids.iter().copied())
        .map(|id| async move { (id, terminal_snapshot(progress, id).await) })
        .buffer_unordered(ids.len().max(1))
        .collect::<Vec<_>>();
    let outcome = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), followed).await;
    let snapshots = match outcome {
        Ok(snapshots) => snapshots,
        // Some stream never ended: read where every task stands.
        Err(_) => {
            futures::stream::iter(ids.iter().copied())
                .map(|id| async move { (id, progress.get(id).await.ok().flatten()) })
                .buffer_unordered(16)
                .collect()
                .await
        }
    };
    let (ended, stuck): (Vec<_>, Vec<_>) = snapshots
        .into_iter()
        .partition(|(_, snapshot)| snapshot.as_ref().is_some_and(TaskProgress::is_terminal));
    if stuck.is_empty() {
        Ok(ended.into_iter().filter_map(|(id, s)| s.map(|s| (id, s))).collect())
    } else {
        Err(stuck)
    }
}

/// The task's terminal snapshot: its stream ends after it (a stream that
/// ends early, on a lost connection, is opened again). `None` when the
/// tracker does not know the task.
async fn terminal_snapshot(progress: &dyn ProgressTracker, id: TaskId) -> Option<TaskProgress> {
    loop {
        let mut stream = progress.stream(id).await.ok()?;
        while let Some(snapshot) = stream.next().await {
            if snapshot.is_terminal() {
                return Some(snapshot);
            }
        }
    }
}

/// Kills a random worker every 2 to 3 s and starts another; never ends.
async fn kill_workers(env: &NodeEnv, workers: &mut Vec<Node>, kills: &mut Vec<Kill>, rng: &mut Rng) {
    let mut started = workers.len();
    loop {
        tokio::time::sleep(Duration::from_millis(rng.between(KILL_EVERY_MS.0, KILL_EVERY_MS.1))).await;
        let victim = workers.swap_remove(rng.between(0, workers.len() as u64 - 1) as usize);
        let pid = victim.pid;
        victim.kill().await;
        kills.push(Kill { pid, at_ms: now_ms() });
        workers.push(env.start("worker", &format!("worker-{started}")).await);
        started += 1;
    }
}

/// The tasks still going at the deadline: their progress as the tracker
/// has it, their stored saga state, and their step runs.
async fn describe_stuck(
    stuck: &[(TaskId, Option<TaskProgress>)],
    services: &Services,
    ledger: &Ledger,
    kills: &[Kill],
    seed: u64,
) -> String {
    let mut lines = vec![format!(
        "{} tasks had not ended {} s after the first submission ({} kills, CHAOS_SEED={seed}):",
        stuck.len(),
        DEADLINE.as_secs(),
        kills.len()
    )];
    for (id, progress) in stuck.iter().take(20) {
        let tracked = progress.as_ref().map_or_else(
            || "no progress".to_owned(),
            |p| {
                let steps: Vec<String> = p
                    .steps
                    .iter()
                    .map(|s| format!("{} {:?} x{}", s.name, s.status, s.attempts))
                    .collect();
                format!("{:?} at revision {} [{}]", p.status, p.revision, steps.join(", "))
            },
        );
        let stored = services.stored_status(*id).await;
        let runs: Vec<String> = ledger
            .runs
            .get(&id.to_string())
            .into_iter()
            .flatten()
            .map(ToString::to_string)
            .collect();
        lines.push(format!(
            "  {id}: tracker {tracked}; {stored}; runs: {}",
            runs.join("; ")
        ));
    }
    let kills: Vec<String> = kills.iter().map(|k| format!("{}@{}", k.pid, k.at_ms)).collect();
    lines.push(format!("kills (pid@ms): {}", kills.join(" ")));
    lines.join("\n")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// xorshift64: the kill schedule, replayable with `CHAOS_SEED`.
struct Rng {
    seed: u64,
    state: u64,
}

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()) << 32);
        Self { seed, state: seed | 1 }
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        low + self.state % (high - low + 1)
    }
}
