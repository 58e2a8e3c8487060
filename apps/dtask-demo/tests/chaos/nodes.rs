//! The processes of the chaos test: the `chaos_node` example binary run as
//! one API and several workers, each logging to a file of its own in a
//! directory kept when the test fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a node may take to print its first line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `chaos_node` example, next to the test executable's directory
/// (`target/<profile>/examples/chaos_node`). `cargo test` builds it with
/// the other targets; `cargo test --test chaos` alone does not (nor
/// rebuilds it when the libraries change).
///
/// # Panics
/// When it is missing, or older than its source.
pub(crate) fn chaos_node_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/chaos-HASH
    let profile = test
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let binary = profile.join("examples").join("chaos_node");
    let build = "build it with `cargo build -p dtask-demo --example chaos_node` (a plain `cargo test` builds it too)";
    let built = modified(&binary).unwrap_or_else(|| panic!("{} is missing: {build}", binary.display()));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/chaos_node.rs");
    if modified(&source).is_some_and(|source| source > built) {
        panic!("{} is older than its source: {build}", binary.display());
    }
    binary
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The nodes' log directory: removed when the test passes (unless
/// `CHAOS_KEEP_LOGS` is set), kept and named when it fails.
pub(crate) struct LogDir {
    path: PathBuf,
}

impl LogDir {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dtask-chaos-")
            .tempdir()
            .expect("a log directory");
        Self { path: dir.keep() }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The distinct warnings and errors of every node, with their counts
    /// (task ids and timestamps left out so that repeats group).
    pub(crate) fn digest(&self) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let files = std::fs::read_dir(&self.path).into_iter().flatten().flatten();
        for file in files {
            let text = std::fs::read_to_string(file.path()).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")) {
                let message = line.split_once(' ').map_or(line, |(_, rest)| rest).trim_start();
                let message: Vec<&str> = message
                    .split(' ')
                    .filter(|word| !word.starts_with("task_id=") && !word.starts_with("attempt="))
                    .collect();
                *counts.entry(message.join(" ")).or_default() += 1;
            }
        }
        if counts.is_empty() {
            return "the nodes logged no warning".to_owned();
        }
        let lines: Vec<String> = counts
            .into_iter()
            .map(|(message, count)| format!("  {count} x {message}"))
            .collect();
        format!("the nodes' warnings:\n{}", lines.join("\n"))
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("CHAOS_KEEP_LOGS").is_some() {
            eprintln!("chaos: the nodes' logs are in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What every node of one run shares.
pub(crate) struct NodeEnv {
    pub(crate) binary: PathBuf,
    /// The queue prefix (`DTASK_NAMESPACE`).
    pub(crate) namespace: String,
    /// Every Redis key of the run starts with it (`CHAOS_KEY_PREFIX`).
    pub(crate) key_prefix: String,
    pub(crate) s3_endpoint: String,
    /// Where the nodes' logs go, one file per process.
    pub(crate) log_dir: PathBuf,
    /// The PostgreSQL URL when the run is on PostgreSQL alone.
    pub(crate) postgres: Option<String>,
}

/// One running node; killed (SIGKILL) when dropped.
pub(crate) struct Node {
    child: Child,
    pub(crate) pid: u32,
    /// Its first line on stdout.
    pub(crate) first_line: String,
}

impl NodeEnv {
    /// Starts `chaos_node ROLE` and waits for its first line.
    pub(crate) async fn start(&self, role: &str, name: &str) -> Node {
        let log = self.log_dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("a log file");
        let mut command = Command::new(&self.binary);
        if let Some(url) = &self.postgres {
            command.env("DTASK_QUEUE", "postgres").env("DTASK_DATABASE_URL", url);
        }
        let mut child = command
            .arg(role)
            .env("DTASK_NAMESPACE", &self.namespace)
            .env("CHAOS_KEY_PREFIX", &self.key_prefix)
            .env("DTASK_S3_ENDPOINT", &self.s3_endpoint)
            .env("DTASK_LOCK_TTL_SECS", "3")
            .env("DTASK_WORKER_CONCURRENCY", "4")
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("chaos_node starts");
        let pid = child.id().expect("a running child");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first_line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .ok()
            .and_then(|line| line.ok().flatten())
            .unwrap_or_else(|| {
                let logged = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("`chaos_node {role}` printed nothing; it logged:\n{logged}")
            });
        // Keep the pipe drained.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Node { child, pid, first_line }
    }
}

impl Node {
    /// SIGKILL, and waits until the process is gone.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
