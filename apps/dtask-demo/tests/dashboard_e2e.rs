//! The dashboard end to end in a real headless Chromium: starts two demo
//! servers in-process (one plain, one whose archive step hangs until
//! cancelled) and runs `e2e/dashboard.test.mjs` (playwright-core driving
//! Debian's `chromium`) against them.
//!
//! Needs `node`, `npm ci --prefix apps/dtask-demo/e2e` and
//! `apt-get install -y chromium`; fails (never skips) with the command to
//! run when one is missing. Screenshots land in `$DTASK_SCREENSHOT_DIR`
//! (default `/tmp`): `dtask-dashboard.png`, `dtask-dashboard-narrow.png`,
//! `dtask-dashboard-running.png`, `dtask-dashboard-cancelled.png`.
//!
//! The operations dashboard (`/ops`) too: an API server without workers
//! whose first task a worker gives up on (dead-lettered), and a worker host
//! on the same in-memory services and task history that runs the next one;
//! `e2e/ops.test.mjs` reads both through the page and retries the dead
//! letter from it. Screenshots `dtask-ops-*.png`.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dtask::HistorySettings;
use dtask::memory::MemoryTaskHistory;
use dtask::{Host, Mode, TaskStatus};
use dtask_demo::CreateZipFromFiles;
use dtask_demo::client::ApiClient;
use dtask_demo::server::ServerConfig;
use futures::StreamExt;
use support::Gate;
use support::node::{check_prerequisites, run_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_uploads_shows_live_progress_downloads_and_cancels_in_chromium() {
    check_prerequisites(&["playwright-core"]);
    // A short hold on the archive step lets the page show the task running.
    let server = support::start(Some(Gate::Delay("CreateZipArchive", Duration::from_millis(1500)))).await;
    let hanging = support::start(Some(Gate::Hang("CreateZipArchive"))).await;
    let shots = std::env::var("DTASK_SCREENSHOT_DIR").unwrap_or_else(|_| "/tmp".to_owned());
    let stdout = run_node(
        "dashboard.test.mjs",
        &[
            ("DTASK_SERVER_URL", &server.url),
            ("DTASK_HANGING_SERVER_URL", &hanging.url),
            ("DTASK_SCREENSHOT_DIR", &shots),
        ],
    )
    .await;
    assert!(stdout.contains("pass 4"), "the four browser tests ran:\n{stdout}");
    for shot in [
        "dtask-dashboard.png",
        "dtask-dashboard-narrow.png",
        "dtask-dashboard-running.png",
        "dtask-dashboard-cancelled.png",
    ] {
        assert!(Path::new(&shots).join(shot).exists(), "screenshot {shot} taken");
    }
    server.stop().await;
    hanging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_dashboard_shows_tasks_timelines_workers_and_retries_a_dead_letter_in_chromium() {
    check_prerequisites(&["playwright-core"]);
    let history = Arc::new(MemoryTaskHistory::new());
    let config = ServerConfig {
        history: Some((history.clone(), HistorySettings::default())),
        ..ServerConfig::default()
    };
    // The API: no workers; its hand-offs go through the in-memory queue.
    let api = support::start_configured(config, |builder| builder.run_workers(false).serialize_in_process(true)).await;
    let client = ApiClient::new(&api.url).expect("a client");
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("note.txt");
    std::fs::write(&file, b"operations\n").expect("a file");

    // The first task: a worker gives up on its message.
    let dead = client
        .submit_zip(std::slice::from_ref(&file), None)
        .await
        .expect("submitted");
    let infra = api.host.infrastructure().clone();
    let mut deliveries = infra.consumer.consume("file-processing").await.expect("the queue");
    let delivery = deliveries.next().await.expect("a delivery").expect("a message");
    assert_eq!(delivery.message().task_id.to_string(), dead.task_id);
    delivery
        .dead_letter("a downstream service refused it")
        .await
        .expect("dead-lettered");
    drop(deliveries);

    // A worker host on the same services and history runs the next one.
    let worker_id = "ops-worker-1";
    let worker = Host::builder()
        .mode(Mode::InProcess)
        .register(CreateZipFromFiles)
        .infrastructure(infra)
        .serialize_in_process(true)
        .history_with(history, HistorySettings::default())
        .node_name(worker_id)
        .build()
        .expect("a worker host");
    let done = client.submit_zip(&[file], None).await.expect("submitted");
    let mut stream = worker
        .stream(done.task_id.parse().expect("an id"))
        .await
        .expect("its progress");
    let mut last = None;
    while let Some(progress) = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("the task moves on")
    {
        last = Some(progress);
    }
    assert_eq!(last.map(|p| p.status), Some(TaskStatus::Completed));

    let shots = std::env::var("DTASK_SCREENSHOT_DIR").unwrap_or_else(|_| "/tmp".to_owned());
    let stdout = run_node(
        "ops.test.mjs",
        &[
            ("DTASK_OPS_URL", &api.url),
            ("DTASK_DONE_TASK", &done.task_id),
            ("DTASK_DEAD_TASK", &dead.task_id),
            ("DTASK_WORKER_ID", worker_id),
            ("DTASK_SCREENSHOT_DIR", &shots),
        ],
    )
    .await;
    assert!(stdout.contains("pass 1"), "the browser test ran:\n{stdout}");
    for shot in ["overview", "tasks", "task", "dead-letters", "retried", "workers"] {
        let path = Path::new(&shots).join(format!("dtask-ops-{shot}.png"));
        assert!(path.exists(), "screenshot {} taken", path.display());
    }
    worker.shutdown().await;
    api.stop().await;
}
