//! A Distributed-mode cluster of real OS processes for the end-to-end
//! tests: one `api` and any number of `worker`s of the demo binary, talking
//! through the real RabbitMQ or Redis Streams, Redis and an S3 server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
    RedisStreams,
}

/// One running process of the demo binary; killed when dropped.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) first_line: String,
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
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
}

impl Cluster {
    pub(crate) fn new(broker: Broker) -> Self {
        require("Redis", "127.0.0.1:6379");
        if matches!(broker, Broker::RabbitMq) {
            require("RabbitMQ", "127.0.0.1:5672");
        }
        Self {
            broker,
            namespace: format!("e2e-{}", uuid_like()),
            s3: S3Server::find_or_start(),
            api_format: "json",
            worker_format: "json",
        }
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
                    Broker::RedisStreams => "redis-streams",
                },
            )
            .env("DTASK_NAMESPACE", &self.namespace)
            .env("DTASK_S3_ENDPOINT", &self.s3.endpoint)
            .env("DTASK_LOCK_TTL_SECS", "3")
            .env("DTASK_VISIBILITY_TIMEOUT_SECS", "3")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command
    }

    /// Starts a process and waits for its first line on stdout (the
    /// dashboard URL, or "Worker ready").
    fn start(&self, args: &[&str]) -> Process {
        let mut child = self.command(args).spawn().expect("the demo binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = sender.send(line);
            }
            for _ in lines {} // keep the pipe drained
        });
        let first_line = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("`dtask-demo {}` printed nothing", args.join(" ")));
        Process { child, first_line }
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
        let process = self.start(&["worker", "--concurrency", "4", "--serializer", self.worker_format]);
        assert!(process.first_line.starts_with("Worker ready"), "{}", process.first_line);
        process
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id(), nanos)
}
