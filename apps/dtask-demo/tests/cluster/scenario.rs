//! The end-to-end scenario every Distributed-mode cluster runs (one
//! `api`, workers, the real services): twenty zips checked byte for
//! byte, a cancellation across processes that leaves no object behind,
//! and a worker killed with SIGKILL in the middle of CreateZipArchive
//! whose task completes on another worker, resumed from its snapshot.

use std::time::{Duration, Instant};

use dtask::distributed::dtask_s3::S3ObjectStore;
use dtask::infra::ObjectStore;
use dtask::{StepStatus, TaskProgress, TaskStatus};
use dtask_demo::client::ApiClient;

use super::{Cluster, download_entries, finish, noise, until, write_file as write};

fn zip_running(progress: &TaskProgress) -> bool {
    let zip = &progress.steps[1];
    zip.status == StepStatus::Running && zip.fraction.is_some_and(|f| f > 0.0)
}

async fn objects_left(store: &S3ObjectStore, task_id: &str) -> usize {
    let mut left = 0;
    for bucket in ["incoming-files", "processed-files"] {
        left += store.list(bucket, task_id).await.expect("list").len();
    }
    left
}

/// The key ring of a sealed run (two keys: the second opens only).
pub(crate) const KEYS: &str =
    "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Asserts that the saga state of `task_id` in Redis (the demo's default
/// prefix) is sealed with `k2` and does not show the archive's name.
async fn assert_state_sealed(task_id: &str, archive_name: &str) {
    let client = redis::Client::open("redis://127.0.0.1:6379").expect("a Redis URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("Redis");
    let fields: Vec<Vec<u8>> = redis::cmd("HGETALL")
        .arg(format!("dtask:state:{{{task_id}}}"))
        .query_async(&mut conn)
        .await
        .expect("the saga state");
    assert!(!fields.is_empty(), "no saga state for {task_id}");
    let sealed = fields
        .iter()
        .any(|value| value.starts_with(&[0x00, b'D', b'T', b'S', 0x01, 2, b'k', b'2']));
    assert!(sealed, "the saga state of {task_id} is not sealed with k2");
    for value in &fields {
        assert!(
            !value.windows(archive_name.len()).any(|w| w == archive_name.as_bytes()),
            "the saga state of {task_id} shows the request"
        );
    }
}

/// Runs the cluster scenario; `history`: the processes keep the task
/// history in PostgreSQL, and the killed worker's attempt shows in it.
pub(crate) async fn run_cluster(cluster: &Cluster, sealed: bool, history: bool) {
    let (api, url) = cluster.api();
    let mut worker_a = cluster.worker();
    let mut worker_b = cluster.worker();
    let client = ApiClient::new(&url).expect("a client");
    let store = cluster.s3_store().await;
    let dir = tempfile::tempdir().expect("a temporary directory");

    // Twenty tasks, all checked byte for byte.
    let mut submitted = Vec::new();
    for i in 0..20u64 {
        let small = write(dir.path(), &format!("note-{i}.txt"), format!("task {i}\n").as_bytes());
        let big = write(
            dir.path(),
            &format!("data-{i}.bin"),
            &noise(200_000 + i as usize * 10_000, i),
        );
        let task = client
            .submit_zip(&[small, big], Some(&format!("t{i}.zip")))
            .await
            .expect("submitted");
        submitted.push((i, task));
    }
    for (i, task) in &submitted {
        let last = finish(&client, task).await;
        assert_eq!(last.status, TaskStatus::Completed, "task {i}: {:?}", last.error);
        let entries = download_entries(&client, task, dir.path()).await;
        let expected = [
            (format!("note-{i}.txt"), format!("task {i}\n").into_bytes()),
            (format!("data-{i}.bin"), noise(200_000 + *i as usize * 10_000, *i)),
        ];
        assert_eq!(entries.len(), 2, "task {i}");
        if sealed {
            assert_state_sealed(&task.task_id, &format!("t{i}.zip")).await;
        }
        for ((name, content), (expected_name, expected_content)) in entries.iter().zip(&expected) {
            assert_eq!(name, expected_name);
            assert!(content == expected_content, "task {i}: {name} differs");
        }
    }

    // A cancellation sent to the API process stops the worker's step; its
    // compensation deletes the Api step's uploads from S3.
    let large = write(dir.path(), "large.bin", &noise(120 * 1024 * 1024, 99));
    let task = client
        .submit_zip(std::slice::from_ref(&large), Some("big.zip"))
        .await
        .expect("submitted");
    until(&client, &task, zip_running).await;
    let asked = Instant::now();
    client.cancel(&task.links.cancel).await.expect("cancel accepted");
    let cancelled = until(&client, &task, |p| p.steps[1].status != StepStatus::Running).await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the step's token fired in {:?}",
        asked.elapsed()
    );
    assert_ne!(cancelled.steps[1].status, StepStatus::Completed);
    let last = finish(&client, &task).await;
    assert_eq!(last.status, TaskStatus::Cancelled, "{:?}", last.error);
    assert_eq!(objects_left(&store, &task.task_id).await, 0, "no object is left behind");

    // A worker killed with SIGKILL in the middle of CreateZipArchive: the
    // task completes on another worker, resumed from its snapshot.
    worker_b.kill_hard();
    let task = client
        .submit_zip(std::slice::from_ref(&large), Some("again.zip"))
        .await
        .expect("submitted");
    until(&client, &task, zip_running).await;
    let worker_c = cluster.worker();
    worker_a.kill_hard();
    let killed = Instant::now();
    let retried = until(&client, &task, |p| p.steps[1].attempts >= 2).await;
    let waited = killed.elapsed();
    let last = finish(&client, &task).await;
    assert_eq!(last.status, TaskStatus::Completed, "{:?}", last.error);
    assert_eq!(last.steps[0].attempts, 1, "the upload step was not run again");
    assert_eq!(last.steps[1].attempts, 2, "one attempt per worker");
    assert_eq!(retried.steps[1].status, StepStatus::Running);
    assert!(
        waited >= Duration::from_millis(1500),
        "the second worker waited for the dead worker's lock to expire (waited {waited:?})"
    );
    let entries = download_entries(&client, &task, dir.path()).await;
    assert_eq!(entries.len(), 1);
    assert!(entries[0].1 == noise(120 * 1024 * 1024, 99), "the archive is intact");
    if history {
        assert_history_of_the_resumed_task(&url, &task.task_id).await;
    }
    drop((worker_c, api));
}

/// The history of the task whose worker was killed: written by the API
/// (submit), the killed worker (its attempt, never ended) and the worker
/// that resumed it, into one PostgreSQL history.
async fn assert_history_of_the_resumed_task(url: &str, task_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let history = loop {
        let history: serde_json::Value = reqwest::get(format!("{url}/api/tasks/{task_id}/history"))
            .await
            .expect("the history answers")
            .json()
            .await
            .expect("JSON");
        // The resuming worker writes its records a moment after the task ends.
        if history["task"]["progress"]["status"] == "completed" || Instant::now() > deadline {
            break history;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(history["task"]["progress"]["status"], "completed", "{history}");
    assert_eq!(history["audit"][0]["action"], "submit");
    let zips: Vec<&serde_json::Value> = history["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step"] == "CreateZipArchive" && a["kind"] == "run")
        .collect();
    assert_eq!(zips.len(), 2, "one attempt per worker: {history}");
    assert_ne!(zips[0]["worker"], zips[1]["worker"], "two workers ran it");
    assert!(
        zips[0]["endedAt"].is_null(),
        "the killed worker never ended its attempt"
    );
    assert_eq!(zips[1]["outcome"], "succeeded");
    let trace = &history["task"]["progress"]["traceId"];
    assert!(
        history["audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| &e["traceId"] == trace)
    );
}
