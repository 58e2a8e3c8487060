//! Shared helpers: the demo server in-process on a free port, a gate that
//! slows, holds or fails one step, test data and archive reading.

#![allow(dead_code)] // each test file uses a part

pub(crate) mod node;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use dtask::host::HostBuilder;
use dtask::{Host, StepError, StepInterceptor};
use dtask_demo::server::{DemoServer, ServerConfig, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What happens to every attempt of one step.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Gate {
    /// Waits this long (cancellably) before running.
    Delay(&'static str, Duration),
    /// Never runs: waits for its token (cancellation or timeout).
    Hang(&'static str),
    /// Fails for good.
    Fail(&'static str),
}

#[async_trait]
impl StepInterceptor for Gate {
    async fn before_attempt(
        &self,
        _task: &'static str,
        step: &'static str,
        _attempt: u32,
        token: &CancellationToken,
    ) -> Result<(), StepError> {
        match *self {
            Self::Delay(name, delay) if name == step => tokio::select! {
                () = tokio::time::sleep(delay) => Ok(()),
                () = token.cancelled() => Err(StepError::cancelled()),
            },
            Self::Hang(name) if name == step => {
                token.cancelled().await;
                Err(StepError::cancelled())
            }
            Self::Fail(name) if name == step => Err(StepError::permanent("injected failure of the archive step")),
            _ => Ok(()),
        }
    }
}

/// A demo server running in this process.
pub(crate) struct Running {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub(crate) url: String,
    pub(crate) host: Host,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Stops the server gracefully and checks it stopped cleanly, within
    /// `within`.
    pub(crate) async fn stop_within(self, within: Duration) {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(within, self.task)
            .await
            .expect("the server stops within its bound");
        ended
            .expect("the server task does not panic")
            .expect("the server stops cleanly");
    }

    pub(crate) async fn stop(self) {
        self.stop_within(Duration::from_secs(30)).await;
    }
}

/// Starts the demo server on `127.0.0.1:0` with `config` (its `listen` is
/// replaced) and an optional gate.
pub(crate) async fn start_with(config: ServerConfig, gate: Option<Gate>) -> Running {
    start_configured(config, |builder| match gate {
        Some(gate) => builder.interceptor(gate),
        None => builder,
    })
    .await
}

/// Starts the demo server on `127.0.0.1:0` with `config` (its `listen` is
/// replaced), `configure` adjusting its host.
pub(crate) async fn start_configured(
    config: ServerConfig,
    configure: impl FnOnce(HostBuilder) -> HostBuilder,
) -> Running {
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        ..config
    };
    let server = DemoServer::bind_with(config, configure)
        .await
        .expect("the demo server starts");
    let url = format!("http://{}", server.local_addr());
    let host = server.host().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running { url, host, stop, task }
}

/// Starts the demo server with the default configuration.
pub(crate) async fn start(gate: Option<Gate>) -> Running {
    start_with(ServerConfig::default(), gate).await
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

/// Every entry of the archive at `path`, by name.
pub(crate) fn read_zip(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut archive = zip::ZipArchive::new(file).expect("a valid zip archive");
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).expect("a readable entry");
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("a readable entry");
        entries.insert(entry.name().expect("a UTF-8 name").into_owned(), content);
    }
    entries
}
