//! Graceful shutdown with real processes: SIGTERM to a worker in the middle
//! of CreateZipArchive (a 120 MiB input), once with a grace long enough
//! for the step to finish there and once with a 1 s grace that cancels it;
//! either way the worker exits 0, hands the task back and releases its
//! lock, so a second worker finishes the task at once, without waiting for
//! the lock's 30 s lifetime. And SIGTERM to the API process in the middle
//! of an upload: the upload is drained, answered `202`, its task completes,
//! and the process exits 0.
//!
//! The tests run one at a time: each zips 120 MiB on a machine of two
//! cores, and the API test finds its task in the shared task list.

mod cluster;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster::{Broker, Cluster, Process, download_entries, finish, noise, until, write_file};
use dtask::{StepStatus, TaskProgress, TaskStatus};
use dtask_demo::client::{ApiClient, Submitted};
use tokio::sync::Mutex;

/// The lock lifetime: a second worker that had to wait for the stopped
/// worker's lock to expire would take this long.
const LOCK_TTL_SECS: u64 = 30;

/// How soon after it is ready the second worker must be running the task:
/// far below [`LOCK_TTL_SECS`].
const PICK_UP_WITHIN: Duration = Duration::from_secs(10);

/// The size of the big input.
const BIG: usize = 120 * 1024 * 1024;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn cluster() -> Cluster {
    Cluster::new(Broker::RabbitMq).env("DTASK_LOCK_TTL_SECS", &LOCK_TTL_SECS.to_string())
}

/// CreateZipArchive is running and has reported progress.
fn zip_running(progress: &TaskProgress) -> bool {
    let zip = &progress.steps[1];
    zip.status == StepStatus::Running && zip.fraction.is_some_and(|f| f > 0.0)
}

/// Sends SIGTERM to `worker`; returns its exit status and how long it took
/// to exit, failing after `within`.
fn terminate(worker: &mut Process, within: Duration) -> (std::process::ExitStatus, Duration) {
    let sent = Instant::now();
    worker.terminate();
    let status = worker
        .wait_for_exit(within)
        .unwrap_or_else(|| panic!("the worker did not exit within {within:?} of SIGTERM"));
    (status, sent.elapsed())
}

/// Submits the big file and waits until the only worker is zipping it.
async fn big_task_running(client: &ApiClient, dir: &std::path::Path, name: &str) -> Submitted {
    let big = write_file(dir, "big.bin", &noise(BIG, 7));
    let task = client
        .submit_zip(std::slice::from_ref(&big), Some(name))
        .await
        .expect("submitted");
    until(client, &task, zip_running).await;
    task
}

async fn archive_is_intact(client: &ApiClient, task: &Submitted, dir: &std::path::Path) {
    let entries = download_entries(client, task, dir).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "big.bin");
    assert!(
        entries[0].1 == noise(BIG, 7),
        "the archive holds the input, byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_mid_step_finishes_the_step_and_hands_the_task_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = cluster();
    let (_api, url) = cluster.api();
    let client = ApiClient::new(&url).expect("a client");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let grace = Duration::from_secs(120);
    let mut worker_a = cluster.worker_with(&[("DTASK_SHUTDOWN_GRACE_SECS", &grace.as_secs().to_string())]);
    let task = big_task_running(&client, dir.path(), "finished.zip").await;

    let (status, took) = terminate(&mut worker_a, grace + Duration::from_secs(15));
    let exited = Instant::now();
    assert!(status.success(), "the worker exited with {status}");
    let at_exit = client.status(&task.links.status).await.expect("a status");
    println!(
        "SIGTERM mid-zip, grace {grace:?}: the worker exited 0 after {took:?}; CreateZipArchive {:?} (attempt {}), UploadZip {:?}",
        at_exit.steps[1].status, at_exit.steps[1].attempts, at_exit.steps[2].status
    );
    // With this grace the step finishes on the stopping worker; had it not,
    // it would have been handed back unfinished. The next step never
    // starts there.
    assert_eq!(
        at_exit.steps[1].status,
        StepStatus::Completed,
        "the step finished within the grace"
    );
    assert_eq!(at_exit.steps[1].attempts, 1);
    assert_eq!(at_exit.steps[2].attempts, 0, "no step started after SIGTERM");
    assert!(!at_exit.is_terminal());

    // Started only now, so that what the task shows above is the stopped
    // worker's doing alone.
    let _worker_b = cluster.worker();
    let ready = Instant::now();
    let picked_up = until(&client, &task, |p| p.steps[2].attempts >= 1).await;
    let waited = ready.elapsed();
    println!(
        "the second worker, ready {:?} after the first exited, started UploadZip {waited:?} later",
        ready - exited
    );
    assert!(
        waited < PICK_UP_WITHIN,
        "the second worker waited {waited:?}: the lock ({LOCK_TTL_SECS} s) was not released"
    );
    assert_eq!(picked_up.steps[1].attempts, 1, "the finished step was not run again");

    let last = finish(&client, &task).await;
    assert_eq!(last.status, TaskStatus::Completed, "{:?}", last.error);
    assert_eq!(last.steps[0].attempts, 1);
    assert_eq!(last.steps[1].attempts, 1);
    archive_is_intact(&client, &task, dir.path()).await;
    cluster.remove_queue().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_still_running_when_the_grace_is_over_is_cancelled_and_handed_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = cluster();
    let (_api, url) = cluster.api();
    let client = ApiClient::new(&url).expect("a client");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut worker_a = cluster.worker_with(&[("DTASK_SHUTDOWN_GRACE_SECS", "1")]);
    let task = big_task_running(&client, dir.path(), "handed-back.zip").await;

    // The grace (1 s), then at most the kernel's cancel grace (5 s) for
    // the step to notice its token.
    let (status, took) = terminate(&mut worker_a, Duration::from_secs(10));
    let exited = Instant::now();
    assert!(status.success(), "the worker exited with {status}");
    let at_exit = client.status(&task.links.status).await.expect("a status");
    println!(
        "SIGTERM mid-zip, grace 1 s: the worker exited 0 after {took:?}; CreateZipArchive {:?} (attempt {})",
        at_exit.steps[1].status, at_exit.steps[1].attempts
    );
    assert!(took >= Duration::from_secs(1), "the step had its grace ({took:?})");
    assert_eq!(at_exit.steps[1].status, StepStatus::Cancelled, "the step was cancelled");
    assert_eq!(at_exit.steps[1].attempts, 1);
    assert!(!at_exit.is_terminal());

    let _worker_b = cluster.worker();
    let ready = Instant::now();
    let resumed = until(&client, &task, |p| p.steps[1].attempts >= 2).await;
    let waited = ready.elapsed();
    println!(
        "the second worker, ready {:?} after the first exited, ran CreateZipArchive again {waited:?} later",
        ready - exited
    );
    assert!(
        waited < PICK_UP_WITHIN,
        "the second worker waited {waited:?}: the lock ({LOCK_TTL_SECS} s) was not released"
    );
    assert_eq!(resumed.steps[1].status, StepStatus::Running);

    let last = finish(&client, &task).await;
    assert_eq!(last.status, TaskStatus::Completed, "{:?}", last.error);
    assert_eq!(last.steps[0].attempts, 1, "the upload step was not run again");
    assert_eq!(
        last.steps[1].attempts, 2,
        "the handed-back attempt, then the second worker's"
    );
    archive_is_intact(&client, &task, dir.path()).await;
    cluster.remove_queue().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_prefetched_by_a_stopping_worker_go_to_another_worker_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = cluster();
    let (_api, url) = cluster.api();
    let client = ApiClient::new(&url).expect("a client");
    let dir = tempfile::tempdir().expect("a temporary directory");
    // One task at a time: a second task waits in the worker's prefetch.
    let mut worker_a = cluster.worker_with(&[("DTASK_SHUTDOWN_GRACE_SECS", "120"), ("DTASK_WORKER_CONCURRENCY", "1")]);
    let big = big_task_running(&client, dir.path(), "big.zip").await;
    let small_file = write_file(dir.path(), "small.txt", b"small\n");
    let small = client
        .submit_zip(&[small_file], Some("small.zip"))
        .await
        .expect("submitted");
    // Started after the small task was pushed to the first worker.
    let _worker_b = cluster.worker();

    worker_a.terminate();
    let last = finish(&client, &small).await;
    assert_eq!(last.status, TaskStatus::Completed, "{:?}", last.error);
    let still_running = worker_a.child.try_wait().expect("try_wait").is_none();
    println!(
        "the prefetched task completed on the other worker while the stopping one was still running: {still_running}"
    );
    assert!(
        still_running,
        "the prefetched task waited for the stopping worker to exit: it was not handed back at SIGTERM"
    );
    let status = worker_a
        .wait_for_exit(Duration::from_secs(135))
        .expect("the worker exits");
    assert!(status.success(), "the worker exited with {status}");
    let last = finish(&client, &big).await;
    assert_eq!(last.status, TaskStatus::Completed, "{:?}", last.error);
    assert_eq!(
        last.steps[1].attempts, 1,
        "the running step finished on the stopping worker"
    );
    archive_is_intact(&client, &big, dir.path()).await;
    cluster.remove_queue().await;
}

/// A multipart submission whose file the test feeds chunk by chunk.
struct HeldUpload {
    chunks: tokio::sync::mpsc::Sender<Bytes>,
    response: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
}

fn start_held_upload(url: &str, file_name: &str, len: u64) -> HeldUpload {
    let (chunks, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), receiver))
    });
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), len)
        .file_name(file_name.to_owned())
        .mime_str("application/octet-stream")
        .expect("a media type");
    let form = reqwest::multipart::Form::new()
        .text("outputFileName", "drained.zip")
        .part("files", part);
    let request = reqwest::Client::new()
        .post(format!("{url}{}", dtask_demo::client::SUBMIT_PATH))
        .multipart(form);
    HeldUpload {
        chunks,
        response: tokio::spawn(request.send()),
    }
}

/// The ids of the CreateZipFromFiles tasks the API lists.
async fn listed(url: &str) -> Vec<TaskProgress> {
    let page: serde_json::Value = reqwest::get(format!("{url}/api/tasks?taskName=CreateZipFromFiles&limit=50"))
        .await
        .expect("the list answers")
        .json()
        .await
        .expect("a JSON page");
    serde_json::from_value(page["items"].clone()).expect("task progress items")
}

/// Waits until the API lists a new task (not in `before`) whose upload step
/// is running.
async fn upload_running(url: &str, before: &[TaskProgress]) -> TaskProgress {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let new = listed(url)
            .await
            .into_iter()
            .find(|p| before.iter().all(|b| b.task_id != p.task_id) && p.steps[0].status == StepStatus::Running);
        if let Some(progress) = new {
            return progress;
        }
        assert!(Instant::now() < deadline, "the upload never showed as running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until nothing listens on `url`'s port any more.
async fn stops_listening(url: &str) {
    let address = url.trim_start_matches("http://").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&address).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the API still accepts connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_process_drains_an_upload_then_exits_0_on_sigterm() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = cluster();
    let (mut api, url) = cluster.api();
    let before = listed(&url).await;
    let content = noise(16 * 1024 * 1024, 11);
    let (head, tail) = content.split_at(1024 * 1024);
    let upload = start_held_upload(&url, "drained.bin", content.len() as u64);
    upload
        .chunks
        .send(Bytes::copy_from_slice(head))
        .await
        .expect("the first chunk");
    let running = upload_running(&url, &before).await;
    // Someone follows the task: an open event stream must not hold the
    // shutdown up.
    let client = ApiClient::new(&url).expect("a client");
    let mut events = client
        .events(&format!("/api/tasks/{}/stream", running.task_id), None)
        .await
        .expect("the event stream opens");
    events.next().await.expect("a first event").expect("a snapshot");

    let sent = Instant::now();
    api.terminate();
    stops_listening(&url).await;
    // Shutting down, and the upload is not finished: it is drained.
    for chunk in tail.chunks(1024 * 1024) {
        upload
            .chunks
            .send(Bytes::copy_from_slice(chunk))
            .await
            .expect("a chunk");
    }
    drop(upload.chunks);
    let response = upload.response.await.expect("the request task").expect("an answer");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let submitted: Submitted = response.json().await.expect("the accepted task");
    assert_eq!(submitted.task_id, running.task_id.to_string());
    let status = api
        .wait_for_exit(Duration::from_secs(20))
        .expect("the API exits after draining");
    println!("the API exited with {status} {:?} after SIGTERM", sent.elapsed());
    assert!(status.success(), "the API exited with {status}");
    while let Ok(Some(_)) = events.next().await {} // the stream was ended by the shutdown

    // The drained submission was handed to the queue: a worker and a new
    // API process finish it.
    let (_api, url) = cluster.api();
    let _worker = cluster.worker();
    let client = ApiClient::new(&url).expect("a client");
    let last = finish(&client, &submitted).await;
    assert_eq!(last.status, TaskStatus::Completed, "{:?}", last.error);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let entries = download_entries(&client, &submitted, dir.path()).await;
    assert_eq!(entries.len(), 1);
    assert!(entries[0].1 == content, "the drained upload arrived whole");
    cluster.remove_queue().await;
}
