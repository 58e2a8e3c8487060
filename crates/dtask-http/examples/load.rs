//! Measures one API server under load, from outside its process: how many
//! concurrent SSE clients it holds, and its peak memory while a large file
//! is uploaded through it.
//!
//! ```sh
//! cargo run --release -p dtask-http --example load -- sse 5000      # 5 000 SSE clients on 50 running tasks
//! cargo run --release -p dtask-http --example load -- upload 1024   # a 1 GiB upload, then its zip
//! ```
//!
//! The driver starts the server as a child process (`load serve`), talks
//! to it over HTTP, and reads the child's `VmRSS` and `VmHWM` from
//! `/proc`. The server stores files in a temporary directory that it
//! removes when it stops, so nothing large is left behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::routing::post;
use dtask::fs::LocalFileSystemStore;
use dtask::prelude::*;
use dtask::{Host, TaskStatus};
use dtask_demo::CreateZipFromFiles;
use dtask_http::TaskApi;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

const GATE_TASKS: usize = 50;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve"] => runtime.block_on(serve()),
        ["sse", n] => runtime.block_on(sse(n.parse()?)),
        ["upload", mib] => runtime.block_on(upload(mib.parse()?)),
        _ => bail!("usage: load sse CLIENTS | load upload MIB"),
    }
}

// ---------------------------------------------------------------- server

/// Waits at its gate until `POST /gate/open`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GateRequest {}

/// Gate's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateResponse {
    /// Always true.
    pub passed: bool,
}

/// A task that runs until its gate opens.
#[dtask::task(name = "Gate", request = GateRequest, response = GateResponse, queue = "gate", mode = InProcess, cancellable)]
#[custom_step(Wait, order = 1, output = bool)]
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
}

impl gate::Steps for Gate {
    async fn wait(&self, cx: &StepContext, _input: gate::WaitInput<'_>) -> Result<bool, StepError> {
        let mut open = self.open.subscribe();
        cx.report_progress(0.5, "waiting for the gate".to_owned());
        tokio::select! {
            _ = open.wait_for(|open| *open) => Ok(true),
            () = cx.cancelled() => Err(StepError::cancelled()),
        }
    }

    fn response(&self, outputs: gate::Outputs<'_>) -> Result<GateResponse, StepError> {
        Ok(GateResponse { passed: *outputs.wait })
    }
}

async fn serve() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = Gate {
        open: Arc::new(watch::channel(false).0),
    };
    let host = Host::builder()
        .register(CreateZipFromFiles)
        .register(gate.clone())
        .worker_concurrency(GATE_TASKS * 2)
        .storage(LocalFileSystemStore::new(dir.path().join("store"))?)
        .scratch_root(dir.path().join("scratch"))
        .build()?;
    let app = TaskApi::builder(host.clone())
        .downloadable::<CreateZipFromFiles>()
        .task::<Gate>()
        .build()
        .route(
            "/gate/open",
            post(move || {
                gate.open.send_replace(true);
                async {}
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    // Stop when the driver closes our stdin.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = stop.send(());
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await?;
    host.shutdown().await;
    drop(dir);
    Ok(())
}

// ---------------------------------------------------------------- driver

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("listening ").context("the server's address")?;
        Ok(Self {
            base: format!("http://{addr}"),
            child,
        })
    }

    /// The server's resident set (current, peak), in MiB.
    fn rss_mib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
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

    fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        self.child.wait()?;
        Ok(())
    }
}

async fn status(client: &reqwest::Client, server: &Server, id: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(format!("{}/api/tasks/{id}", server.base))
        .send()
        .await?
        .json()
        .await?)
}

/// Polls the task until `done` holds (the driver has no event to await
/// across processes).
async fn poll(
    client: &reqwest::Client,
    server: &Server,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    loop {
        let progress = status(client, server, id).await?;
        if done(&progress) {
            return Ok(progress);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sse(clients: usize) -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..GATE_TASKS {
        let answer: Value = client
            .post(format!("{}/api/tasks/gate", server.base))
            .json(&serde_json::json!({}))
            .send()
            .await?
            .json()
            .await?;
        ids.push(answer["taskId"].as_str().context("a task id")?.to_owned());
    }
    for id in &ids {
        poll(&client, &server, id, |p| {
            p["steps"][0]["message"] == "waiting for the gate"
        })
        .await?;
    }
    let (idle, _) = server.rss_mib();
    let started = Instant::now();
    let (ready, mut readiness) = mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for i in 0..clients {
        let request = client.get(format!("{}/api/tasks/{}/stream", server.base, ids[i % ids.len()]));
        let ready = ready.clone();
        handles.push(tokio::spawn(async move {
            let mut body = request.send().await?.bytes_stream();
            let mut text = String::new();
            let mut announced = false;
            while let Some(chunk) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk?));
                if !announced && text.contains("\n\n") {
                    announced = true;
                    let _ = ready.send(());
                }
            }
            let last = text
                .rsplit("data: ")
                .next()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let last: Value = serde_json::from_str(&last)?;
            anyhow::Ok(last["status"] == "completed")
        }));
    }
    drop(ready);
    for _ in 0..clients {
        readiness
            .recv()
            .await
            .context("a client failed before its first event")?;
    }
    let connected = started.elapsed();
    let (with_clients, _) = server.rss_mib();
    let released = Instant::now();
    client.post(format!("{}/gate/open", server.base)).send().await?;
    let mut completed = 0;
    for handle in handles {
        if handle.await?? {
            completed += 1;
        }
    }
    let delivered = released.elapsed();
    let (after, peak) = server.rss_mib();
    println!("SSE: {clients} clients on {GATE_TASKS} running tasks");
    println!("  connected (first event received by all) in {connected:.2?}");
    println!("  terminal event received by {completed} of {clients}, {delivered:.2?} after release");
    println!(
        "  server RSS: {idle} MiB idle, {with_clients} MiB with the clients (~{} KiB per client), {after} MiB after, peak {peak} MiB",
        with_clients.saturating_sub(idle) * 1024 / clients.max(1) as u64
    );
    server.stop()?;
    if completed != clients {
        bail!("{} clients missed the terminal event", clients - completed);
    }
    Ok(())
}

/// Incompressible bytes, made as they are sent.
fn noise(mib: usize) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> {
    const CHUNK: usize = 256 * 1024;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    futures::stream::iter(0..mib * 4).map(move |_| {
        let mut chunk = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.extend_from_slice(&state.to_le_bytes());
        }
        Ok(chunk)
    })
}

async fn upload(mib: usize) -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = reqwest::Client::new();
    let (idle, _) = server.rss_mib();
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(noise(mib))).file_name("big.bin");
    let form = reqwest::multipart::Form::new()
        .text("outputFileName", "big")
        .part("files", part);
    let started = Instant::now();
    let response = client
        .post(format!("{}/api/tasks/create-zip-from-files", server.base))
        .multipart(form)
        .send()
        .await?;
    let uploaded = started.elapsed();
    if response.status() != 202 {
        bail!("the upload was refused: {}", response.text().await?);
    }
    let answer: Value = response.json().await?;
    let id = answer["taskId"].as_str().context("a task id")?.to_owned();
    let (_, peak_upload) = server.rss_mib();
    let end = poll(&client, &server, &id, |p| p["isComplete"] == true).await?;
    let zipped = started.elapsed();
    let (after, peak) = server.rss_mib();
    let status: TaskStatus = serde_json::from_value(end["status"].clone())?;
    let mut download = client
        .get(format!("{}/api/tasks/{id}/download", server.base))
        .send()
        .await?
        .bytes_stream();
    let mut downloaded = 0u64;
    while let Some(chunk) = download.next().await {
        downloaded += chunk?.len() as u64;
    }
    let downloaded_in = started.elapsed() - zipped;
    println!("Upload: {mib} MiB in one file part (chunked, no Content-Length)");
    println!(
        "  202 after {uploaded:.2?} ({:.0} MiB/s); task {} after {zipped:.2?}; archive of {} MiB downloaded in {downloaded_in:.2?}",
        mib as f64 / uploaded.as_secs_f64(),
        status.as_str(),
        downloaded / (1024 * 1024)
    );
    println!(
        "  server RSS: {idle} MiB idle, peak {peak_upload} MiB during the upload, peak {peak} MiB including the zip, {after} MiB after"
    );
    server.stop()?;
    Ok(())
}
