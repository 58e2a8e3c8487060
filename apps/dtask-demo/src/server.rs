//! The demo server: CreateZipFromFiles and VideoTranscode behind the dtask
//! HTTP API, with the [dashboard](crate::dashboard::router) at `/`. A
//! server that runs workers refuses to start without `ffmpeg` and
//! `ffprobe` ([`ServerError::Tools`]).
//!
//! The binary's `serve` command (the default) is [`DemoServer::bind`] then
//! [`DemoServer::run`]; tests start the same server in-process on
//! `127.0.0.1:0`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dtask_demo::server::ServerError> {
//! use dtask_demo::server::{DemoServer, ServerConfig};
//!
//! let server = DemoServer::bind(ServerConfig { listen: "127.0.0.1:0".into(), ..ServerConfig::default() }).await?;
//! println!("Dashboard: {}", server.dashboard_url());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use dtask::codec::KeyRing;
use dtask::fs::LocalFileSystemStore;
use dtask::host::HostBuilder;
use dtask::infra::TaskHistory;
use dtask::{EventKind, Format, HistorySettings, Host, Infrastructure, KernelSettings, Mode};
use dtask_http::{ApiConfig, Authenticator, MetricsRender, ServeOptions, TaskApi};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::video::{Ffmpeg, MissingTool, Notifier, NotifierError, VideoTranscode};
use crate::{CreateZipFromFiles, dashboard};

mod sse_cut;

/// Where the server keeps uploaded files and archives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Storage {
    /// A [`LocalFileSystemStore`] in a temporary directory removed when the
    /// server stops (the default: memory does not grow with uploads).
    #[default]
    Temporary,
    /// A [`LocalFileSystemStore`] in this directory, kept.
    Directory(PathBuf),
    /// The in-memory object store (uploads and archives held in memory).
    InMemory,
}

/// How to run the demo server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to listen on (default `127.0.0.1:8080`; port `0` picks
    /// a free one, see [`DemoServer::local_addr`]).
    pub listen: String,
    /// Where files go.
    pub storage: Storage,
    /// The API's limits and options.
    pub api: ApiConfig,
    /// How long a shutdown waits for open requests (downloads, uploads)
    /// before closing them (default 10 s). Event streams end at once.
    pub shutdown_grace: Duration,
    /// Distributed mode: the connected infrastructure (`storage` is then
    /// unused). `None`: InProcess mode.
    pub distributed: Option<Distributed>,
    /// The wire format of messages and snapshots, overriding the task's
    /// declared one (`DTASK_SERIALIZER`). In InProcess mode nothing is
    /// serialized, so it changes nothing there.
    pub serializer: Option<Format>,
    /// Who may call the API (default: nobody needs to prove anything, and
    /// every caller is the operator).
    pub auth: Authenticator,
    /// The role that sees and manages every task.
    pub operator_role: String,
    /// Serve without authentication on an address beyond loopback (refused
    /// otherwise).
    pub insecure_no_auth: bool,
    /// The durable task history, if one is kept (`DTASK_HISTORY`); the
    /// task list is then served from it.
    pub history: Option<(Arc<dyn TaskHistory>, HistorySettings)>,
    /// Serves `GET /metrics` with what it renders (the process's
    /// Prometheus recorder).
    pub metrics: Option<MetricsRender>,
}

/// How a server runs in Distributed mode.
#[derive(Debug, Clone)]
pub struct Distributed {
    /// The services, connected (see `dtask::distributed`).
    pub infrastructure: Infrastructure,
    /// Whether this process runs workers too (`serve`) or only the API
    /// (`api`).
    pub run_workers: bool,
    /// The kernel's settings (lock lifetime...).
    pub kernel: KernelSettings,
    /// Seals every message and saga state (`DTASK_ENCRYPTION_KEYS`); see
    /// [`HostBuilder::encryption`].
    pub encryption: Option<KeyRing>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            storage: Storage::default(),
            api: ApiConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            distributed: None,
            serializer: None,
            auth: Authenticator::default(),
            operator_role: dtask::DEFAULT_OPERATOR_ROLE.to_owned(),
            insecure_no_auth: false,
            history: None,
            metrics: None,
        }
    }
}

/// Why the server could not start or stopped. The cause is the error's
/// [`source`](std::error::Error::source) (print with `{:#}` through anyhow).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Another process listens on the address.
    #[error("cannot listen on {addr}: the address is already in use (choose another with --listen ADDR)")]
    AddressInUse {
        /// The address asked for.
        addr: String,
    },
    /// The address is beyond loopback and the API has no authentication.
    #[error(
        "refusing to listen on {addr} without authentication: anyone who reaches it could read, cancel and \
         download every task; set DTASK_AUTH_JWT_SECRET, DTASK_AUTH_JWT_PUBLIC_KEY, DTASK_AUTH_JWT_JWKS or \
         DTASK_AUTH_API_KEYS, listen on 127.0.0.1, or pass --insecure-no-auth"
    )]
    Insecure {
        /// The address asked for.
        addr: String,
    },
    /// The address could not be bound for another reason.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be prepared.
    #[error("cannot prepare the data directory")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The task host could not be built.
    #[error("cannot start the task host")]
    Host(#[source] dtask::Error),
    /// VideoTranscode's notification client is misconfigured.
    #[error("cannot set up VideoTranscode")]
    Video(#[source] NotifierError),
    /// This server runs workers but `ffmpeg` or `ffprobe` cannot be run.
    #[error(transparent)]
    Tools(#[from] MissingTool),
    /// Serving failed.
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
}

/// A bound, not yet running, demo server.
#[derive(Debug)]
pub struct DemoServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    host: Host,
    grace: Duration,
    stopping: CancellationToken,
    _data: Option<tempfile::TempDir>,
}

impl DemoServer {
    /// Binds `config.listen` and builds the host and the routes.
    ///
    /// # Errors
    /// [`ServerError::AddressInUse`] and [`ServerError::Bind`] when the
    /// address cannot be listened on; [`ServerError::Storage`] and
    /// [`ServerError::Host`] when the host cannot be built.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        Self::bind_with(config, |builder| builder).await
    }

    /// [`bind`](Self::bind), letting `configure` adjust the host (tests
    /// add interceptors or listeners).
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub async fn bind_with(
        config: ServerConfig,
        configure: impl FnOnce(HostBuilder) -> HostBuilder,
    ) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(&config.listen).await.map_err(|source| {
            let addr = config.listen.clone();
            match source.kind() {
                std::io::ErrorKind::AddrInUse => ServerError::AddressInUse { addr },
                _ => ServerError::Bind { addr, source },
            }
        })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        if !local_addr.ip().is_loopback() && !config.auth.is_enabled() && !config.insecure_no_auth {
            return Err(ServerError::Insecure { addr: config.listen });
        }
        // NotifyWebhook follows the rules of the API's own webhooks.
        let notifier = Notifier::new(&config.api.webhooks).map_err(ServerError::Video)?;
        let video = VideoTranscode::new(Ffmpeg::from_env(), notifier);
        let runs_workers = config.distributed.as_ref().is_none_or(|d| d.run_workers);
        if runs_workers {
            video.ffmpeg().check().await?;
        }
        let (builder, data) = host_builder(&config, video)?;
        let host = configure(builder).build().map_err(ServerError::Host)?;
        let stopping = CancellationToken::new();
        let mut api = TaskApi::builder(host.clone())
            .downloadable::<CreateZipFromFiles>()
            .downloadable::<VideoTranscode>()
            .config(config.api)
            .authentication(config.auth);
        if let Some(render) = config.metrics {
            api = api.metrics(render);
        }
        let api = api.build();
        let router = api
            .merge(dashboard::router())
            .layer(axum::middleware::from_fn_with_state(
                stopping.clone(),
                sse_cut::end_streams_on_shutdown,
            ));
        Ok(Self {
            listener,
            local_addr,
            router,
            host,
            grace: config.shutdown_grace,
            stopping,
            _data: data,
        })
    }

    /// The address the server listens on (the port chosen when asked for
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The dashboard's URL, e.g. `http://127.0.0.1:8080/` (the loopback
    /// address when listening on every interface).
    pub fn dashboard_url(&self) -> String {
        let mut addr = self.local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("http://{addr}/")
    }

    /// The task host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Serves until `shutdown` completes, then stops gracefully: no new
    /// connections, event streams end, running tasks reach a step boundary
    /// (`Host::shutdown`), open requests get the configured grace.
    ///
    /// # Errors
    /// [`ServerError::Serve`] when serving fails.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Self {
            listener,
            router,
            host,
            grace,
            stopping,
            _data,
            ..
        } = self;
        let signal = stopping.clone();
        let serve = dtask_http::serve(listener, router, ServeOptions::default(), async move {
            shutdown.await;
            signal.cancel();
        });
        let mut server = tokio::spawn(serve);
        tokio::select! {
            ended = &mut server => {
                host.shutdown().await;
                return joined(ended);
            }
            () = stopping.cancelled() => {}
        }
        tracing::info!("shutting down: no new connections; waiting for running tasks to reach a step boundary");
        host.shutdown().await;
        match tokio::time::timeout(grace, &mut server).await {
            Ok(ended) => joined(ended)?,
            Err(_) => {
                tracing::warn!(?grace, "closing the requests still open after the grace period");
                server.abort();
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

fn joined(ended: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ServerError> {
    match ended {
        Ok(result) => result.map_err(ServerError::Serve),
        Err(error) => Err(ServerError::Serve(std::io::Error::other(error))),
    }
}

/// A host builder serving CreateZipFromFiles and `video` that logs every
/// event.
pub fn logged_host_builder(video: VideoTranscode) -> HostBuilder {
    Host::builder()
        .register(CreateZipFromFiles)
        .register(video)
        .trace_bridge(dtask_telemetry::OtelBridge)
        .on_event(|event| match &event.kind {
            EventKind::StepProgress { .. } => tracing::debug!(task = %event.task_id, event = ?event.kind),
            kind => tracing::info!(task = %event.task_id, event = ?kind, "task event"),
        })
}

fn host_builder(
    config: &ServerConfig,
    video: VideoTranscode,
) -> Result<(HostBuilder, Option<tempfile::TempDir>), ServerError> {
    let mut builder = logged_host_builder(video).operator_role(config.operator_role.clone());
    if let Some((history, settings)) = &config.history {
        builder = builder.history_with(Arc::clone(history), settings.clone());
    }
    if let Some(format) = config.serializer {
        builder = builder.serializer(format);
    }
    if let Some(distributed) = &config.distributed {
        if let Some(keys) = &distributed.encryption {
            builder = builder.encryption(keys.clone());
        }
        let builder = builder
            .mode(Mode::Distributed)
            .infrastructure(distributed.infrastructure.clone())
            .kernel_settings(distributed.kernel.clone())
            .run_workers(distributed.run_workers);
        return Ok((builder, None));
    }
    let builder = builder.in_process();
    let (root, temp) = match &config.storage {
        Storage::InMemory => return Ok((builder, None)),
        Storage::Directory(dir) => (dir.clone(), None),
        Storage::Temporary => {
            let temp = tempfile::Builder::new()
                .prefix("dtask-demo-")
                .tempdir()
                .map_err(|e| ServerError::Storage(e.into()))?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let store = LocalFileSystemStore::new(root.join("objects")).map_err(|e| ServerError::Storage(e.into()))?;
    tracing::info!(dir = %root.display(), "files are kept in a local directory");
    Ok((builder.storage(store).scratch_root(root.join("scratch")), temp))
}
