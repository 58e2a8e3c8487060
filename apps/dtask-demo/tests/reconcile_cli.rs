//! `dtask-demo reconcile` against real Redis and a real S3 server, in
//! Distributed mode: a dry run lists the orphans and deletes nothing; a
//! real run deletes exactly them; and the `api` process runs the same at
//! start.
//!
//! Each test runs its own `s3s-fs` over a directory of its own, so the
//! buckets hold only the objects it wrote (and no other test's objects can
//! be deleted), and it can age an object by setting its file's
//! modification time, which `s3s-fs` reports as the object's
//! `LastModified`. Progress and saga state go to the shared Redis under
//! fresh task ids.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dtask::codec::Codec;
use dtask::distributed::dtask_redis::{RedisBackends, RedisConfig};
use dtask::distributed::dtask_s3::{S3Config, S3ObjectStore};
use dtask::infra::{ObjectStore, ObjectStoreExt, ProgressTracker, SagaStateStore, StoredState};
use dtask::{Format, SCHEMA_VERSION, SagaSnapshot, Task, TaskId, TaskProgress, TaskStatus};
use dtask_demo::{CreateZipFromFiles, CreateZipRequest};
use time::OffsetDateTime;

const INCOMING: &str = "incoming-files";
const PROCESSED: &str = "processed-files";
const REDIS: &str = "redis://127.0.0.1:6379";
const TWO_HOURS: Duration = Duration::from_secs(2 * 3600);

/// An `s3s-fs` of this test's own, over a temporary directory; stopped
/// when dropped.
struct PrivateS3 {
    endpoint: String,
    data: tempfile::TempDir,
    child: Child,
}

impl PrivateS3 {
    /// Starts `s3s-fs` on a free port. The port is free when picked but
    /// may be taken before the server binds it (tests run in parallel):
    /// the port counts as ours only once the buckets made through it
    /// appear in our data directory; otherwise the server starts again on
    /// another port.
    async fn start() -> Self {
        let binary = s3s_fs().expect("s3s-fs is not installed: run scripts/s3-server install");
        for _ in 0..5 {
            let data = tempfile::tempdir().expect("a temporary directory");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let child = Command::new(&binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", "minioadmin", "--secret-key", "minioadmin"])
                .arg(data.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("s3s-fs starts");
            let address = format!("127.0.0.1:{port}");
            let mut server = Self {
                endpoint: format!("http://{address}"),
                data,
                child,
            };
            // A process's port opens when it is ready: no event to wait on.
            for _ in 0..200 {
                if server.child.try_wait().expect("the server's status").is_some() {
                    break; // it could not bind: try another port
                }
                if TcpStream::connect(&address).is_ok() && server.child.try_wait().expect("status").is_none() {
                    if server.is_ours().await {
                        return server;
                    }
                    break; // another process answers there: try another port
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("s3s-fs did not start on any of five ports");
    }

    /// Whether the server on our port is our `s3s-fs`: the buckets made
    /// through it are directories of our data directory.
    async fn is_ours(&self) -> bool {
        let config = S3Config::endpoint(&self.endpoint, "minioadmin", "minioadmin");
        S3ObjectStore::connect(config, &[INCOMING, PROCESSED]).await.is_ok()
            && [INCOMING, PROCESSED].iter().all(|b| self.data.path().join(b).is_dir())
    }

    async fn store(&self) -> S3ObjectStore {
        let config = S3Config::endpoint(&self.endpoint, "minioadmin", "minioadmin");
        S3ObjectStore::connect(config, &[INCOMING, PROCESSED])
            .await
            .expect("the private S3 server")
    }

    /// Makes `bucket/key` look written `age` ago.
    fn age(&self, bucket: &str, key: &str, age: Duration) {
        let path: PathBuf = self.data.path().join(bucket).join(key);
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        file.set_modified(SystemTime::now() - age).expect("mtime set");
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs() -> Option<PathBuf> {
    let cargo_bin = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"));
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
}

async fn redis() -> RedisBackends {
    if TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), Duration::from_secs(2)).is_err() {
        panic!("Redis is not reachable at 127.0.0.1:6379 (this test needs it)");
    }
    RedisConfig::new(REDIS).connect().await.expect("Redis")
}

/// Records a task in `status` in the progress tracker, under a name no
/// other test lists.
async fn record(progress: &dyn ProgressTracker, status: TaskStatus) -> TaskId {
    let task_id = TaskId::new();
    let mut snapshot = TaskProgress::new(task_id, CreateZipFromFiles::definition(), OffsetDateTime::now_utc());
    snapshot.task_name = "ReconcileCliTest".into();
    progress.init(&snapshot).await.expect("init");
    snapshot.status = status;
    snapshot.revision = 1;
    snapshot.is_complete = status.is_terminal();
    if status.is_terminal() {
        progress.complete(&snapshot).await.expect("complete");
    } else {
        progress.update(&snapshot).await.expect("update");
    }
    task_id
}

/// A saga state of CreateZipFromFiles in `status`, as a worker saves it.
fn saga_state(task_id: TaskId, status: TaskStatus) -> StoredState {
    let now = OffsetDateTime::now_utc();
    let mut progress = TaskProgress::new(task_id, CreateZipFromFiles::definition(), now);
    progress.task_name = "ReconcileCliTest".into();
    progress.status = status;
    let snapshot = SagaSnapshot::<CreateZipFromFiles> {
        schema_version: SCHEMA_VERSION,
        request: Arc::new(CreateZipRequest::default()),
        data: Default::default(),
        progress,
        response: None,
        deadline: now,
    };
    StoredState {
        fence: 1,
        payload: Codec::new(Format::MessagePack)
            .encode_state(&snapshot)
            .expect("encoded"),
    }
}

/// The objects CreateZipFromFiles writes for `task_id`: a source and the
/// archive.
async fn objects_of(s3: &PrivateS3, store: &S3ObjectStore, task_id: TaskId, age: Duration) -> Vec<(String, String)> {
    let objects = vec![
        (
            INCOMING.to_owned(),
            format!("{task_id}/UploadSourceFiles/0000-notes.txt"),
        ),
        (PROCESSED.to_owned(), format!("{task_id}/UploadZip/0000-archive.zip")),
    ];
    for (bucket, key) in &objects {
        put(s3, store, bucket, key, age).await;
    }
    objects
}

async fn put(s3: &PrivateS3, store: &S3ObjectStore, bucket: &str, key: &str, age: Duration) {
    store
        .put_bytes(bucket, key, Bytes::from(format!("object {key}")))
        .await
        .expect("stored");
    if !age.is_zero() {
        s3.age(bucket, key, age);
    }
}

async fn all_objects(store: &S3ObjectStore) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for bucket in [INCOMING, PROCESSED] {
        for meta in store.list(bucket, "").await.expect("listed") {
            all.push((meta.bucket, meta.key));
        }
    }
    all.sort();
    all
}

fn demo(s3: &PrivateS3, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dtask-demo"));
    command
        .args(args)
        .env("DTASK_MODE", "distributed")
        .env("DTASK_QUEUE", "redis-streams")
        .env("DTASK_REDIS_URL", REDIS)
        .env("DTASK_S3_ENDPOINT", &s3.endpoint)
        .env("DTASK_NAMESPACE", format!("reconcile-{}", TaskId::new()));
    command
}

fn run(s3: &PrivateS3, args: &[&str]) -> String {
    let Output { status, stdout, stderr } = demo(s3, args).output().expect("the demo binary runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    assert!(
        status.success(),
        "`dtask-demo {}` failed: {stdout}\n{stderr}",
        args.join(" ")
    );
    stdout.into_owned()
}

fn lines_starting(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|l| l.split(" (task ").next().unwrap_or_default().to_owned())
        .collect()
}

fn located(objects: &[(String, String)]) -> Vec<String> {
    let mut located: Vec<String> = objects.iter().map(|(b, k)| format!("{b}/{k}")).collect();
    located.sort();
    located
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_lists_then_deletes_only_the_orphans() {
    let s3 = PrivateS3::start().await;
    let store = s3.store().await;
    let redis = redis().await;
    let (progress, state) = (redis.progress(), redis.state());

    let completed = record(&progress, TaskStatus::Completed).await;
    let running = record(&progress, TaskStatus::Running).await;
    let failed = record(&progress, TaskStatus::Failed).await;
    let saved_completed = TaskId::new();
    state
        .save(saved_completed, saga_state(saved_completed, TaskStatus::Completed))
        .await
        .unwrap();
    let saved_cancelled = TaskId::new();
    state
        .save(saved_cancelled, saga_state(saved_cancelled, TaskStatus::Cancelled))
        .await
        .unwrap();
    let (stray, fresh_stray) = (TaskId::new(), TaskId::new());

    let mut kept = Vec::new();
    kept.extend(objects_of(&s3, &store, completed, TWO_HOURS).await);
    kept.extend(objects_of(&s3, &store, running, TWO_HOURS).await);
    kept.extend(objects_of(&s3, &store, saved_completed, TWO_HOURS).await);
    kept.extend(objects_of(&s3, &store, fresh_stray, Duration::ZERO).await);
    let foreign = (INCOMING.to_owned(), "notes/readme.txt".to_owned());
    put(&s3, &store, &foreign.0, &foreign.1, TWO_HOURS).await;
    kept.push(foreign);
    let mut orphans = Vec::new();
    orphans.extend(objects_of(&s3, &store, failed, TWO_HOURS).await);
    orphans.extend(objects_of(&s3, &store, saved_cancelled, TWO_HOURS).await);
    orphans.extend(objects_of(&s3, &store, stray, TWO_HOURS).await);
    let before = all_objects(&store).await;
    assert_eq!(before.len(), kept.len() + orphans.len());

    // The dry run lists the orphans and deletes nothing.
    let dry = run(&s3, &["reconcile", "--dry-run", "--grace-secs", "3600"]);
    let mut listed = lines_starting(&dry, "would delete ");
    listed.sort();
    assert_eq!(listed, located(&orphans), "{dry}");
    assert!(dry.contains(&format!("(task {stray}, unknown task, ")), "{dry}");
    assert!(dry.contains(&format!("(task {failed}, failed, ")), "{dry}");
    assert!(dry.contains(&format!("(task {saved_cancelled}, cancelled, ")), "{dry}");
    let summary = dry.lines().last().unwrap_or_default();
    assert!(summary.starts_with("dry run: would delete 6 objects"), "{dry}");
    assert!(
        summary.contains("kept 9: 2 live, 4 completed, 2 too young, 1 foreign keys, 0 unreadable"),
        "{dry}"
    );
    assert_eq!(all_objects(&store).await, before, "a dry run deletes nothing");

    // The real run deletes exactly those.
    let real = run(&s3, &["reconcile", "--grace-secs", "3600"]);
    let mut deleted = lines_starting(&real, "deleted ");
    deleted.sort();
    assert_eq!(deleted, listed, "{real}");
    let mut expected = kept.clone();
    expected.sort();
    assert_eq!(all_objects(&store).await, expected, "{real}");

    // A grace of zero takes the fresh stray too, and nothing else.
    let zero = run(&s3, &["reconcile", "--grace-secs", "0"]);
    let (fresh, rest): (Vec<_>, Vec<_>) = expected
        .into_iter()
        .partition(|(_, key)| key.starts_with(&fresh_stray.to_string()));
    assert_eq!(lines_starting(&zero, "deleted "), located(&fresh), "{zero}");
    assert_eq!(all_objects(&store).await, rest, "{zero}");

    // Leave nothing that would not expire.
    let mut ended = TaskProgress::new(running, CreateZipFromFiles::definition(), OffsetDateTime::now_utc());
    ended.status = TaskStatus::Cancelled;
    ended.revision = 2;
    ended.is_complete = true;
    let _ = progress.complete(&ended).await;
    let _ = state.delete(saved_completed).await;
    let _ = state.delete(saved_cancelled).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_outside_distributed_mode_is_refused() {
    let s3 = PrivateS3::start().await;
    let output = demo(&s3, &["reconcile", "--dry-run"])
        .env("DTASK_MODE", "in-process")
        .output()
        .expect("the demo binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Distributed mode"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_process_reconciles_when_it_starts() {
    let s3 = PrivateS3::start().await;
    let store = s3.store().await;
    let redis = redis().await;
    let progress = redis.progress();
    let completed = record(&progress, TaskStatus::Completed).await;
    let kept = objects_of(&s3, &store, completed, TWO_HOURS).await;
    let stray = TaskId::new();
    objects_of(&s3, &store, stray, TWO_HOURS).await;

    let mut api = ApiProcess::start(&s3);
    let summary = api.wait_for_log("reconciled the task buckets");
    assert!(summary.contains("deleted=2"), "{summary}");
    drop(api);

    let mut expected = kept;
    expected.sort();
    assert_eq!(all_objects(&store).await, expected);
}

/// The `api` process, its log lines on a channel; killed when dropped.
struct ApiProcess {
    child: Child,
    logs: mpsc::Receiver<String>,
}

impl ApiProcess {
    fn start(s3: &PrivateS3) -> Self {
        let mut child = demo(s3, &["api", "--listen", "127.0.0.1:0"])
            .env("DTASK_RECONCILE_EVERY_SECS", "600")
            .env("DTASK_RECONCILE_GRACE_SECS", "3600")
            .env("RUST_LOG", "warn,dtask_core::reconcile=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the demo binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Self { child, logs }
    }

    /// The first log line containing `needle` (60 s at most).
    fn wait_for_log(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.logs.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no log line with `{needle}`; saw:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
