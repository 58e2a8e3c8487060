//! A real server on an ephemeral port, a real client, and the helpers the
//! HTTP tests share.

#![allow(dead_code, missing_docs, unreachable_pub)]

pub mod schema;
pub mod sse;
pub mod tasks;
pub mod tokens;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use dtask::HostBuilder;
use dtask::testing::TestHost;
use dtask::{Host, TaskId, TaskProgress};
use dtask_demo::CreateZipFromFiles;
use dtask_http::{ApiConfig, Authenticator, ServeOptions, TaskApi, TaskApiBuilder};
use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio::task::JoinHandle;

pub use tasks::{Echo, Gate};

/// How long a test waits for anything.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How long the test server lets a client take over a request's head.
pub const SLOW_CLIENT: Duration = Duration::from_secs(2);

/// A test host serving CreateZipFromFiles, Echo and a Gate, with its
/// scratch directories under `scratch`.
pub fn test_host(gate: &Gate, scratch: &std::path::Path) -> TestHost {
    let gate = gate.clone();
    let scratch = scratch.to_owned();
    TestHost::with(move |builder| {
        builder
            .register(CreateZipFromFiles)
            .register(Echo)
            .register(gate)
            .scratch_root(scratch)
    })
}

/// A running API server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub host: Host,
    pub gate: Gate,
    pub test_host: Option<TestHost>,
    server: JoinHandle<()>,
    scratch: Option<tempfile::TempDir>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestServer {
    /// A server over a fresh test host with the default configuration.
    pub async fn start() -> Self {
        Self::with_config(ApiConfig::default()).await
    }

    /// A server over a fresh test host.
    pub async fn with_config(config: ApiConfig) -> Self {
        let gate = Gate::default();
        let scratch = tempfile::tempdir().unwrap();
        let test_host = test_host(&gate, scratch.path());
        let mut server = Self::serve(test_host.host().clone(), gate, config).await;
        server.test_host = Some(test_host);
        server.scratch = Some(scratch);
        server
    }

    /// A server over `host`, which must register the three test tasks.
    pub async fn serve(host: Host, gate: Gate, config: ApiConfig) -> Self {
        Self::serve_with(host, gate, config, Authenticator::default(), |api| api).await
    }

    /// A server over a fresh test host (with `register` adding tasks to
    /// it), taking credentials as `auth` says; `mount` mounts more tasks.
    pub async fn with_auth(
        auth: Authenticator,
        register: impl FnOnce(HostBuilder) -> HostBuilder + 'static,
        mount: impl FnOnce(TaskApiBuilder) -> TaskApiBuilder,
    ) -> Self {
        let gate = Gate::default();
        let scratch = tempfile::tempdir().unwrap();
        let host_gate = gate.clone();
        let root = scratch.path().to_owned();
        let test_host = TestHost::with(move |builder| {
            register(
                builder
                    .register(CreateZipFromFiles)
                    .register(Echo)
                    .register(host_gate)
                    .scratch_root(root),
            )
        });
        let mut server = Self::serve_with(test_host.host().clone(), gate, ApiConfig::default(), auth, mount).await;
        server.test_host = Some(test_host);
        server.scratch = Some(scratch);
        server
    }

    /// A server over `host` (which must register the three test tasks),
    /// taking credentials as `auth` says; `mount` mounts more tasks.
    pub async fn serve_with(
        host: Host,
        gate: Gate,
        config: ApiConfig,
        auth: Authenticator,
        mount: impl FnOnce(TaskApiBuilder) -> TaskApiBuilder,
    ) -> Self {
        let api = TaskApi::builder(host.clone())
            .downloadable::<CreateZipFromFiles>()
            .task::<Echo>()
            .task::<Gate>()
            .config(config)
            .authentication(auth);
        let app = mount(api).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = ServeOptions {
            header_read_timeout: SLOW_CLIENT,
            ..ServeOptions::default()
        };
        let server = tokio::spawn(async move {
            dtask_http::serve(listener, app, options, std::future::pending())
                .await
                .unwrap();
        });
        Self {
            addr,
            client: reqwest::Client::new(),
            host,
            gate,
            test_host: None,
            server,
            scratch: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn test_host(&self) -> &TestHost {
        self.test_host.as_ref().expect("a server over a test host")
    }

    /// Submits a zip of `files` and returns the 202 answer.
    pub async fn submit_zip(&self, files: &[(&str, &[u8])], output: Option<&str>) -> Value {
        let response = self
            .client
            .post(self.url("/api/tasks/create-zip-from-files"))
            .multipart(zip_form(files, output))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    /// Submits a JSON request to `task` (a route segment) and returns the
    /// task id.
    pub async fn submit_json(&self, task: &str, body: Value) -> String {
        let response = self
            .client
            .post(self.url(&format!("/api/tasks/{task}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        let answer: Value = response.json().await.unwrap();
        answer["taskId"].as_str().unwrap().to_owned()
    }

    /// Waits (on the host's progress stream, no polling) until the task
    /// ends, and returns its final snapshot.
    pub async fn wait_end(&self, task_id: &str) -> TaskProgress {
        let task_id: TaskId = task_id.parse().unwrap();
        let mut stream = self.host.stream(task_id).await.unwrap();
        tokio::time::timeout(PATIENCE, async {
            while let Some(progress) = stream.next().await {
                if progress.is_terminal() {
                    return progress;
                }
            }
            panic!("the stream of {task_id} ended without a terminal snapshot")
        })
        .await
        .expect("the task ends in time")
    }

    /// Waits until the task's step `step` is running.
    pub async fn wait_running(&self, task_id: &str, step: &str) {
        self.wait_until(task_id, |p| p.current_step.as_deref() == Some(step))
            .await;
    }

    /// Waits until a Gate task waits at its gate (and has reported so: no
    /// change follows until the gate opens).
    pub async fn wait_gate(&self, task_id: &str) {
        self.wait_until(task_id, |p| {
            p.steps[0].message.as_deref() == Some("waiting for the gate")
        })
        .await;
    }

    /// Waits until a snapshot of the task satisfies `done`.
    pub async fn wait_until(&self, task_id: &str, done: impl Fn(&TaskProgress) -> bool) {
        let task_id: TaskId = task_id.parse().unwrap();
        let mut stream = self.host.stream(task_id).await.unwrap();
        tokio::time::timeout(PATIENCE, async {
            while let Some(progress) = stream.next().await {
                if done(&progress) {
                    return;
                }
                assert!(!progress.is_terminal(), "the task ended first: {progress:?}");
            }
        })
        .await
        .expect("the task gets there in time");
    }

    /// GET `path` and return status and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A CreateZipFromFiles form: `outputFileName` first, then the files.
pub fn zip_form(files: &[(&str, &[u8])], output: Option<&str>) -> Form {
    let mut form = Form::new();
    if let Some(output) = output {
        form = form.text("outputFileName", output.to_owned());
    }
    for (name, bytes) in files {
        form = form.part("files", Part::bytes(bytes.to_vec()).file_name((*name).to_owned()));
    }
    form
}

/// Checks a problem answer and returns its body.
pub async fn expect_problem(response: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "for {}", response.url());
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(
        body["type"],
        format!("https://dtask.invalid/problems/{kind}"),
        "problem: {body}"
    );
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    body
}

/// Deterministic bytes that deflate cannot shrink much.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
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

/// The entries of a zip archive.
pub fn zip_entries(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        entries.insert(entry.name().unwrap().into_owned(), content);
    }
    entries
}

/// The resident set of this process (current, peak), in MiB.
pub fn rss_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
