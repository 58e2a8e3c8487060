//! The `submit` command against a real demo server (in-process, on a free
//! port): a byte-for-byte archive, an unreachable server, a failed task, a
//! refused upload, and Ctrl-C cancelling a running task.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use dtask::{EventKind, TaskStatus};
use dtask_demo::server::ServerConfig;
use dtask_http::{ApiConfig, UploadLimits};
use support::Gate;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn submit(server: &str, files: &[&Path], output: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dtask-demo"));
    command
        .arg("submit")
        .args(files)
        .args(["--server", server, "--output"])
        .arg(output)
        .env_remove("DTASK_SERVER")
        .kill_on_drop(true);
    command
}

async fn run(mut command: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("submit ends within 2 minutes")
        .expect("submit runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_uploads_follows_and_downloads_the_archive_byte_for_byte() {
    let server = support::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("notes.txt");
    let b = dir.path().join("big.bin");
    let big = support::noise(3 * 1024 * 1024 + 17, 9);
    std::fs::write(&a, b"alpha\n").unwrap();
    std::fs::write(&b, &big).unwrap();
    let out = dir.path().join("bundle.zip");

    let done = run(submit(&server.url, &[&a, &b], &out)).await;
    assert!(done.status.success(), "{}", text(&done.stderr));
    let entries = support::read_zip(&out);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries["notes.txt"], b"alpha\n");
    assert!(entries["big.bin"] == big, "big.bin round-trips byte for byte");
    assert!(!dir.path().join("bundle.zip.part").exists());
    let stdout = text(&done.stdout);
    assert!(stdout.contains("bundle.zip: 2 files"), "{stdout}");
    let stderr = text(&done.stderr);
    assert!(stderr.contains("accepted") && stderr.contains("100%"), "{stderr}");
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"a").unwrap();
    let out = dir.path().join("o.zip");

    let done = run(submit(&url, &[&file], &out)).await;
    assert!(!done.status.success());
    let stderr = text(&done.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the dtask server at {url}")),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_reported_with_its_error() {
    let server = support::start(Some(Gate::Fail("CreateZipArchive"))).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"a").unwrap();
    let out = dir.path().join("o.zip");

    let done = run(submit(&server.url, &[&file], &out)).await;
    assert!(!done.status.success());
    let stderr = text(&done.stderr);
    assert!(
        stderr.contains("the task failed") && stderr.contains("injected failure of the archive step"),
        "{stderr}"
    );
    assert!(!out.exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_prints_the_problem() {
    let limits = UploadLimits {
        max_total_bytes: 4096,
        ..UploadLimits::default()
    };
    let config = ServerConfig {
        api: ApiConfig {
            limits,
            ..ApiConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = support::start_with(config, None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, support::noise(64 * 1024, 3)).unwrap();
    let out = dir.path().join("o.zip");

    let done = run(submit(&server.url, &[&file], &out)).await;
    assert!(!done.status.success());
    let stderr = text(&done.stderr);
    assert!(stderr.contains("(413)"), "the problem's status and title: {stderr}");
    assert!(!out.exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_task_and_waits_for_compensation() {
    let server = support::start(Some(Gate::Hang("CreateZipArchive"))).await;
    let mut events = server.host.events();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"a").unwrap();
    let out = dir.path().join("o.zip");
    let mut child = submit(&server.url, &[&file], &out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The client's log, and word when it has read the task's id (a Ctrl-C
    // before that interrupts the upload: it has no task to cancel).
    let (accepted, mut told) = tokio::sync::watch::channel(false);
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let log = tokio::spawn(async move {
        let mut log = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("accepted") {
                accepted.send_replace(true);
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });

    // Wait until the archive step runs (and hangs) and the client knows
    // the task, then press Ctrl-C.
    tokio::time::timeout(Duration::from_secs(60), told.wait_for(|accepted| *accepted))
        .await
        .expect("the client reads the task's id")
        .expect("the client's log is read");
    let task_id = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = events.recv().await.expect("the host's event bus");
            if let EventKind::StepStarted { step, .. } = &event.kind
                && step.name == "CreateZipArchive"
            {
                break event.task_id;
            }
        }
    })
    .await
    .expect("the archive step starts");
    let pid = child.id().expect("submit is running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());

    let done = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("submit ends once compensation ends")
        .unwrap();
    let stderr = log.await.expect("the log reader ends");
    assert!(!done.status.success(), "{stderr}");
    assert!(stderr.contains("error: cancelled"), "{stderr}");
    let progress = server.host.progress(task_id).await.unwrap().expect("the task is known");
    assert_eq!(progress.status, TaskStatus::Cancelled, "{progress:?}");
    assert!(!out.exists());
    server.stop().await;
}
