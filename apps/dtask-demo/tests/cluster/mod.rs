//! A Distributed-mode cluster of real OS processes for the end-to-end
//! tests: one `api` and any number of `worker`s of the demo binary, talking
//! through the real RabbitMQ or Redis Streams, Redis and an S3 server.

#![allow(dead_code)]

pub(crate) mod scenario;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dtask::TaskProgress;
use dtask_demo::client::{ApiClient, Submitted};

/// The S3 endpoint: the one `scripts/s3-server start` runs (or
/// `DTASK_S3_ENDPOINT`), else an `s3s-fs` this test starts.
pub(crate) struct S3Server {
    pub(crate) endpoint: String,
    own: Option<(Child, tempfile::TempDir)>,
}

impl S3Server {
    pub(crate) fn find_or_start() -> Self {
        let endpoint = std::env::var("DTASK_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
        let address = endpoint.trim_start_matches("http://").trim_end_matches('/');
        if TcpStream::connect_timeout(&address.parse().expect("a host:port endpoint"), Duration::from_secs(1)).is_ok() {
            return Self { endpoint, own: None };
        }
        let binary = which_s3s_fs().unwrap_or_else(|| {
            panic!("no S3 server answers at {endpoint} and s3s-fs is not installed: run scripts/s3-server install")
        });
        let data = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "minioadmin", "--secret-key", "minioadmin"])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let address = format!("127.0.0.1:{port}");
        // Owned from here: dropping the server (also on a panic) stops it.
        let server = Self {
            endpoint: format!("http://{address}"),
            own: Some((child, data)),
        };
        for _ in 0..100 {
            if TcpStream::connect(&address).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("s3s-fs did not start on {address}");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.own {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn which_s3s_fs() -> Option<PathBuf> {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| PathBuf::from(h).join(".cargo")));
    std::env::var("PATH")
        .ok()
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(home.map(|h| h.join("bin")))
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Fails the test unless a TCP service answers.
pub(crate) fn require(service: &str, address: &str) {
    if TcpStream::connect_timeout(&address.parse().expect("an address"), Duration::from_secs(2)).is_err() {
        panic!("{service} is not reachable at {address} (the distributed tests need it)");
    }
}

/// Which broker the cluster uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Broker {
    RabbitMq,
    /// RabbitMQ through its AMQP 1.0 plugin (`dtask-amqp10`).
    Amqp10,
    RedisStreams,
    /// PostgreSQL for everything but the files: the processes are given
    /// closed ports for Redis and RabbitMQ, so a connection to either fails.
    Postgres,
}

/// The PostgreSQL database of the tests (`scripts/test` creates it).
pub(crate) fn database_url() -> String {
    std::env::var("DTASK_DATABASE_URL").unwrap_or_else(|_| "postgres://dtask:dtask@127.0.0.1:5432/dtask_test".into())
}

/// One running process of the demo binary; killed when dropped.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) first_line: String,
    /// Told when the process's stdout closes, which it does when it exits.
    stdout_closed: mpsc::Receiver<()>,
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM: the process should stop gracefully.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits up to `within` for the process to exit; its exit status, or
    /// `None` if it is still running.
    pub(crate) fn wait_for_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        match self.stdout_closed.recv_timeout(within) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => Some(self.child.wait().expect("wait")),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
        }
    }

    /// SIGKILL: the process dies at once, mid-step, without cleaning up.
    pub(crate) fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// A cluster's shared settings.
pub(crate) struct Cluster {
    pub(crate) broker: Broker,
    pub(crate) namespace: String,
    pub(crate) s3: S3Server,
    /// The `DTASK_SERIALIZER` of the API process (the hand-off's format).
    pub(crate) api_format: &'static str,
    /// The `DTASK_SERIALIZER` of the workers (the snapshots' format).
    pub(crate) worker_format: &'static str,
    /// Variables set on every process, after (so overriding) the defaults.
    env: Vec<(String, String)>,
}

impl Cluster {
    pub(crate) fn new(broker: Broker) -> Self {
        match broker {
            Broker::RabbitMq | Broker::Amqp10 => {
                require("Redis", "127.0.0.1:6379");
                require("RabbitMQ", "127.0.0.1:5672");
            }
            Broker::RedisStreams => require("Redis", "127.0.0.1:6379"),
            Broker::Postgres => require("PostgreSQL", "127.0.0.1:5432"),
        }
        Self {
            broker,
            namespace: format!("e2e-{}", uuid_like()),
            s3: S3Server::find_or_start(),
            api_format: "json",
            worker_format: "json",
            env: Vec::new(),
        }
    }

    /// Sets `key` to `value` on every process started from now on (e.g.
    /// `DTASK_LOCK_TTL_SECS`, 3 by default here).
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The API process writes `api` (`json`, `msgpack`, `protobuf`), the
    /// workers write `worker`: every reader follows the format a message
    /// or snapshot names.
    pub(crate) fn serializers(mut self, api: &'static str, worker: &'static str) -> Self {
        self.api_format = api;
        self.worker_format = worker;
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dtask-demo"));
        command
            .args(args)
            .env("DTASK_MODE", "distributed")
            .env(
                "DTASK_QUEUE",
                match self.broker {
                    Broker::RabbitMq => "rabbitmq",
                    Broker::Amqp10 => "amqp10",
                    Broker::RedisStreams => "redis-streams",
                    Broker::Postgres => "postgres",
                },
            )
            .env("DTASK_NAMESPACE", &self.namespace)
            .env("DTASK_S3_ENDPOINT", &self.s3.endpoint)
            .env("DTASK_LOCK_TTL_SECS", "3")
            .env("DTASK_VISIBILITY_TIMEOUT_SECS", "3")
            .env("RUST_LOG", "warn")
            .env("DTASK_DATABASE_URL", database_url())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Broker::Postgres = self.broker {
            // Nothing listens there: a process that dialled either would fail.
            command
                .env("DTASK_REDIS_URL", "redis://127.0.0.1:1")
                .env("DTASK_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f");
        }
        command
    }

    /// Starts a process and waits for its first line on stdout (the
    /// dashboard URL, or "Worker ready").
    fn start(&self, args: &[&str]) -> Process {
        self.start_with(args, &[])
    }

    /// [`start`](Self::start) with extra environment variables.
    fn start_with(&self, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = self
            .command(args)
            .envs(env.iter().copied())
            .spawn()
            .expect("the demo binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        let (closed, stdout_closed) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = sender.send(line);
            }
            for _ in lines {} // keep the pipe drained
            let _ = closed.send(());
        });
        let first_line = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("`dtask-demo {}` printed nothing", args.join(" ")));
        Process {
            child,
            first_line,
            stdout_closed,
        }
    }

    /// Starts the API process; returns it and its base URL.
    pub(crate) fn api(&self) -> (Process, String) {
        let process = self.start(&["api", "--listen", "127.0.0.1:0", "--serializer", self.api_format]);
        let url = process
            .first_line
            .strip_prefix("Dashboard: ")
            .unwrap_or_else(|| panic!("unexpected first line: {}", process.first_line))
            .trim_end_matches('/')
            .to_owned();
        (process, url)
    }

    /// Starts a worker process.
    pub(crate) fn worker(&self) -> Process {
        self.worker_with(&[])
    }

    /// Starts a worker process with extra environment variables (e.g.
    /// `DTASK_SHUTDOWN_GRACE_SECS`; `DTASK_WORKER_CONCURRENCY` replaces the
    /// default concurrency of 4).
    pub(crate) fn worker_with(&self, env: &[(&str, &str)]) -> Process {
        let concurrency = env
            .iter()
            .find(|(key, _)| *key == "DTASK_WORKER_CONCURRENCY")
            .map_or("4", |(_, value)| *value);
        let args = [
            "worker",
            "--concurrency",
            concurrency,
            "--serializer",
            self.worker_format,
        ];
        let process = self.start_with(&args, env);
        assert!(process.first_line.starts_with("Worker ready"), "{}", process.first_line);
        process
    }
}

impl Cluster {
    /// A client of the cluster's S3 server, to check what the tasks stored.
    pub(crate) async fn s3_store(&self) -> dtask::distributed::dtask_s3::S3ObjectStore {
        use dtask::distributed::dtask_s3::{S3Config, S3ObjectStore};
        S3ObjectStore::connect(S3Config::endpoint(&self.s3.endpoint, "minioadmin", "minioadmin"), &[])
            .await
            .expect("the S3 server")
    }

    /// The value of `key` set with [`env`](Self::env), if any.
    fn setting(&self, key: &str) -> Option<&str> {
        (self.env.iter().rev())
            .find(|(set, _)| set == key)
            .map(|(_, value)| value.as_str())
    }

    /// Deletes the run's queues (with their dead-letter queues or streams)
    /// from the broker (the one `DTASK_AMQP_URL` names, when set).
    pub(crate) async fn remove_queue(&self) {
        use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};
        use dtask::distributed::dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};
        let queues = ["file-processing", "video-processing"].map(|name| format!("{}.{name}", self.namespace));
        match self.broker {
            // AMQP 1.0 declares classic queues of the same names (RabbitMQ
            // 3.10 deletes none over AMQP 1.0): deleted over 0-9-1.
            Broker::RabbitMq | Broker::Amqp10 => {
                let urls = self
                    .setting("DTASK_AMQP_URL")
                    .unwrap_or("amqp://guest:guest@127.0.0.1:5672/%2f");
                let config = AmqpConfig::cluster(urls.split(',')).expect("a RabbitMQ URL");
                let amqp = AmqpQueue::connect(config).await.expect("RabbitMQ");
                for queue in &queues {
                    amqp.delete(queue).await.expect("the test queue is deleted");
                }
            }
            Broker::RedisStreams => {
                let streams = RedisStreamsQueue::connect(RedisStreamsConfig::new("redis://127.0.0.1:6379"))
                    .await
                    .expect("Redis");
                for queue in &queues {
                    streams.delete_queue(queue).await.expect("the test stream is deleted");
                }
            }
            Broker::Postgres => {
                let postgres = dtask::distributed::dtask_postgres::PostgresConfig::new(database_url())
                    .connect()
                    .await
                    .expect("PostgreSQL");
                for queue in &queues {
                    postgres
                        .queue()
                        .delete_queue(queue)
                        .await
                        .expect("the test queue is deleted");
                }
            }
        }
    }
}

/// Deterministic bytes that deflate cannot shrink much.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes `bytes` to `dir/name`; returns the path.
pub(crate) fn write_file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("test data is written");
    path
}

/// Follows a task's SSE stream to its end; returns the last snapshot.
pub(crate) async fn finish(client: &ApiClient, task: &Submitted) -> TaskProgress {
    let mut follower = client.follow(&task.links.stream);
    let mut last = None;
    while let Some(progress) = follower.next().await.expect("the stream stays readable") {
        last = Some(progress);
    }
    last.expect("at least one snapshot")
}

/// Follows a task until `ready` holds for a snapshot; returns it.
pub(crate) async fn until(client: &ApiClient, task: &Submitted, ready: impl Fn(&TaskProgress) -> bool) -> TaskProgress {
    let mut follower = client.follow(&task.links.stream);
    while let Some(progress) = follower.next().await.expect("the stream stays readable") {
        if ready(&progress) {
            return progress;
        }
        assert!(!progress.is_terminal(), "ended before the awaited state: {progress:?}");
    }
    panic!("the stream ended");
}

/// Downloads the task's archive into `dir`; returns its entries (name,
/// bytes) in order.
pub(crate) async fn download_entries(
    client: &ApiClient,
    task: &Submitted,
    dir: &std::path::Path,
) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let output = dir.join(format!("{}.zip", task.task_id));
    client
        .download(&task.links.download, &output)
        .await
        .expect("the archive downloads");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&output).expect("the archive")).expect("a zip");
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).expect("an entry");
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("entry bytes");
        entries.push((entry.name().expect("a name").into_owned(), content));
    }
    let _ = std::fs::remove_file(&output);
    entries
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id(), nanos)
}
