//! Restarts with real processes: one `api` and two `worker`s on RabbitMQ,
//! Redis and an S3 server.
//!
//! - RabbitMQ's application is stopped and started again while tasks run
//!   (one of them zipping 120 MiB), and more are submitted during the
//!   outage: no task is lost, the publishes wait for the broker, the
//!   consumers subscribe again, no step runs twice, and the client sees
//!   every task complete with its archive intact.
//! - Redis is restarted the way this machine runs it (it keeps nothing on
//!   disk, so every lock, progress snapshot, saga state and idempotency key
//!   is gone): the tasks queued in RabbitMQ, or running at the time, still
//!   complete, their progress restored by the worker that runs them (see
//!   docs/resilience.md for what is lost).
//!
//! Both restart shared services for a few seconds (`rabbitmqctl` and
//! `redis-server` need root, as the test runner here is): this binary runs
//! its tests one at a time, and `cargo test` runs the test binaries one
//! after another, so no other test sees the outage.

mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{Broker, Cluster, download_entries, finish, noise, until, write_file};
use dtask::{StepStatus, TaskProgress, TaskStatus};
use dtask_demo::client::{ApiClient, ClientError, Submitted};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Tasks submitted before the restart, and during it.
const BEFORE: u64 = 20;
const DURING: u64 = 5;

/// The size of the long task's file.
const LONG: usize = 120 * 1024 * 1024;

/// The size of each task's data file: enough for the tasks to still be
/// running when the restart begins.
fn data_len(i: u64) -> usize {
    6 * 1024 * 1024 + i as usize * 64 * 1024
}

/// Runs a command that must succeed.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program} {args:?}`: {e}"));
    assert!(
        output.status.success(),
        "`{program} {args:?}` failed (it needs root): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// RabbitMQ's application, stopped until [`BrokerStopped::start`] or drop
/// (so a failing test never leaves the broker down).
struct BrokerStopped {
    started: bool,
}

impl BrokerStopped {
    async fn stop() -> Self {
        tokio::task::spawn_blocking(|| run("rabbitmqctl", &["stop_app"]))
            .await
            .expect("stop_app");
        Self { started: false }
    }

    async fn start(mut self) {
        self.started = true;
        tokio::task::spawn_blocking(|| run("rabbitmqctl", &["start_app"]))
            .await
            .expect("start_app");
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        if !self.started {
            run("rabbitmqctl", &["start_app"]);
        }
    }
}

/// Stops Redis without saving (it keeps nothing on disk here anyway) and
/// starts it again with the command this machine starts it with; returns
/// once it answers.
fn restart_redis() {
    run("redis-cli", &["-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"]);
    start_redis();
}

fn start_redis() {
    run(
        "redis-server",
        &[
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pong = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379", "ping"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG");
        if pong {
            return;
        }
        assert!(Instant::now() < deadline, "Redis did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One submitted task and the data it zips.
struct Job {
    i: u64,
    task: Submitted,
}

async fn submit(client: &ApiClient, dir: &std::path::Path, i: u64) -> Result<Job, ClientError> {
    let note = write_file(dir, &format!("note-{i}.txt"), format!("task {i}\n").as_bytes());
    let data = write_file(dir, &format!("data-{i}.bin"), &noise(data_len(i), i));
    let task = client.submit_zip(&[note, data], Some(&format!("t{i}.zip"))).await?;
    Ok(Job { i, task })
}

/// Submits the first [`BEFORE`] tasks at once, so that many are queued or
/// running when the restart comes.
async fn submit_all(client: &ApiClient, dir: &std::path::Path) -> Vec<Job> {
    let submissions = (0..BEFORE).map(|i| submit(client, dir, i));
    futures::future::join_all(submissions)
        .await
        .into_iter()
        .map(|job| job.expect("submitted"))
        .collect()
}

/// How many of `jobs` are queued, running and done.
async fn census(client: &ApiClient, jobs: &[Job]) -> String {
    let statuses = futures::future::join_all(jobs.iter().map(|job| client.status(&job.task.links.status))).await;
    let count = |pick: fn(&TaskProgress) -> bool| statuses.iter().filter(|s| s.as_ref().is_ok_and(pick)).count();
    format!(
        "{} tasks queued, {} running, {} done",
        count(|p| p.status == TaskStatus::Queued),
        count(|p| p.status == TaskStatus::Running),
        count(TaskProgress::is_terminal)
    )
}

async fn check_archive(client: &ApiClient, job: &Job, dir: &std::path::Path) {
    let i = job.i;
    let entries = download_entries(client, &job.task, dir).await;
    assert_eq!(entries.len(), 2, "task {i}");
    assert_eq!(entries[0].0, format!("note-{i}.txt"));
    assert!(
        entries[0].1 == format!("task {i}\n").into_bytes(),
        "task {i}: the note differs"
    );
    assert_eq!(entries[1].0, format!("data-{i}.bin"));
    assert!(entries[1].1 == noise(data_len(i), i), "task {i}: the data differs");
}

/// The CreateZipFromFiles tasks the API lists.
async fn listed(url: &str) -> Vec<TaskProgress> {
    let page: serde_json::Value = reqwest::get(format!("{url}/api/tasks?taskName=CreateZipFromFiles&limit=200"))
        .await
        .expect("the list answers")
        .json()
        .await
        .expect("a JSON page");
    serde_json::from_value(page["items"].clone()).expect("task progress items")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_mid_run_loses_no_task() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new(Broker::RabbitMq);
    let (_api, url) = cluster.api();
    let _workers = (cluster.worker(), cluster.worker());
    let client = ApiClient::new(&url).expect("a client");
    let dir = tempfile::tempdir().expect("a temporary directory");

    // A long task, zipping when the broker stops: its worker goes on, and
    // the copy of its message the broker hands out after the restart waits
    // for it instead of running it again.
    let long_file = write_file(dir.path(), "long.bin", &noise(LONG, 99));
    let long = client
        .submit_zip(std::slice::from_ref(&long_file), Some("long.zip"))
        .await
        .expect("submitted");
    until(&client, &long, |p| {
        p.steps[1].status == StepStatus::Running && p.steps[1].fraction.is_some_and(|f| f > 0.0)
    })
    .await;
    let mut jobs = submit_all(&client, dir.path()).await;
    let known: Vec<_> = listed(&url).await.into_iter().map(|p| p.task_id).collect();
    println!(
        "stopping RabbitMQ with the long task zipping and {}",
        census(&client, &jobs).await
    );

    let stopped = BrokerStopped::stop().await;
    let outage = Instant::now();
    // Submitted while the broker is down: the API runs their upload step,
    // then its hand-off waits for the broker.
    let during: Vec<_> = (BEFORE..BEFORE + DURING)
        .map(|i| {
            let (client, dir) = (client.clone(), dir.path().to_owned());
            tokio::spawn(async move { submit(&client, &dir, i).await })
        })
        .collect();
    // The submissions' ids come back only after their hand-off, and the task
    // list has no stream: poll it until they show, waiting for the broker.
    let waiting_deadline = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let waiting: Vec<_> = listed(&url)
            .await
            .into_iter()
            .filter(|p| !known.contains(&p.task_id) && p.status == TaskStatus::Running && p.steps[0].attempts == 1)
            .map(|p| p.task_id)
            .collect();
        if waiting.len() >= DURING as usize {
            break waiting;
        }
        assert!(
            Instant::now() < waiting_deadline,
            "the submissions never reached the hand-off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stopped.start().await;
    println!("RabbitMQ was down for {:?}", outage.elapsed());
    for submission in during {
        let job = submission
            .await
            .expect("the submission task")
            .expect("a submission made during the outage is accepted");
        assert!(
            waiting.iter().any(|id| id.to_string() == job.task.task_id),
            "task {} waited for the broker",
            job.i
        );
        jobs.push(job);
    }

    let began = Instant::now();
    let last = finish(&client, &long).await;
    assert_eq!(last.status, TaskStatus::Completed, "the long task: {:?}", last.error);
    assert_eq!(last.steps[1].attempts, 1, "the long task's zip step ran once");
    let entries = download_entries(&client, &long, dir.path()).await;
    assert!(
        entries.len() == 1 && entries[0].1 == noise(LONG, 99),
        "the long task's archive is intact"
    );
    for job in &jobs {
        let last = finish(&client, &job.task).await;
        assert_eq!(last.status, TaskStatus::Completed, "task {}: {:?}", job.i, last.error);
        check_archive(&client, job, dir.path()).await;
    }
    println!(
        "all {} tasks completed, {:?} after the broker came back",
        jobs.len() + 1,
        began.elapsed()
    );
    cluster.remove_queue().await;
}

/// Polls the task's status until it ends: after a Redis restart the task
/// is unknown to the API until a worker restores its progress, and its
/// event stream is gone.
async fn ended(client: &ApiClient, task: &Submitted, within: Duration) -> TaskProgress {
    let deadline = Instant::now() + within;
    loop {
        match client.status(&task.links.status).await {
            Ok(progress) if progress.is_terminal() => return progress,
            // Unknown until restored; a 503 while the API reconnects.
            Ok(_) | Err(ClientError::Problem { status: 404 | 503, .. }) => {}
            Err(error) => panic!("task {}: {error}", task.task_id),
        }
        assert!(
            Instant::now() < deadline,
            "task {} did not end within {within:?}",
            task.task_id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_that_keeps_nothing_loses_no_queued_or_running_task() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new(Broker::RabbitMq);
    let (_api, url) = cluster.api();
    let client = ApiClient::new(&url).expect("a client");
    let dir = tempfile::tempdir().expect("a temporary directory");

    // A long task first, then the others, all queued before any worker
    // runs. The worker runs one task at a time, in order: the long one is
    // zipping when Redis restarts, and no task has ended (an ended task's
    // progress and result would be lost with Redis, see
    // docs/resilience.md, which is not what this test is about). It then
    // loses the long task's lock and hands it back; the task runs again
    // from the state its message carries.
    let long_file = write_file(dir.path(), "long.bin", &noise(LONG, 99));
    let long = client
        .submit_zip(std::slice::from_ref(&long_file), Some("long.zip"))
        .await
        .expect("submitted");
    let mut jobs = submit_all(&client, dir.path()).await;
    let _worker_a = cluster.worker_with(&[("DTASK_WORKER_CONCURRENCY", "1")]);
    until(&client, &long, |p| {
        p.steps[1].status == StepStatus::Running && p.steps[1].fraction.is_some_and(|f| f > 0.0)
    })
    .await;
    let census = census(&client, &jobs).await;
    let long_zipping = client
        .status(&long.links.status)
        .await
        .is_ok_and(|p| p.steps[1].status == StepStatus::Running);
    assert!(long_zipping, "the long task still zips when Redis restarts");
    println!("restarting Redis with the long task zipping and {census}");
    let restart = Instant::now();
    tokio::task::spawn_blocking(restart_redis)
        .await
        .expect("Redis restarted");
    println!("Redis was restarted in {:?}", restart.elapsed());
    let _worker_b = cluster.worker();
    // The API and the workers reconnect on their own; a request that meets
    // a connection broken by the restart is refused with a 503 (nothing
    // was created), which a client tries again.
    let mut refused = 0;
    for i in BEFORE..BEFORE + DURING {
        let job = loop {
            match submit(&client, dir.path(), i).await {
                Ok(job) => break job,
                Err(ClientError::Problem { status: 503, .. }) if refused < 10 => refused += 1,
                Err(error) => panic!("task {i} submitted after the restart: {error}"),
            }
        };
        jobs.push(job);
    }
    println!("{refused} submissions after the restart were refused with 503 and tried again");

    let mut lost = Vec::new();
    let last = ended(&client, &long, Duration::from_secs(120)).await;
    assert_eq!(last.status, TaskStatus::Completed, "the long task: {:?}", last.error);
    let entries = download_entries(&client, &long, dir.path()).await;
    assert!(
        entries.len() == 1 && entries[0].1 == noise(LONG, 99),
        "the long task's archive is intact"
    );
    for job in &jobs {
        let last = ended(&client, &job.task, Duration::from_secs(120)).await;
        if last.status == TaskStatus::Completed {
            check_archive(&client, job, dir.path()).await;
        } else {
            lost.push((job.i, last.status, last.error));
        }
    }
    assert!(lost.is_empty(), "tasks that did not complete: {lost:?}");
    println!(
        "all {} tasks completed, {:?} after the restart",
        jobs.len() + 1,
        restart.elapsed()
    );
    cluster.remove_queue().await;
}
