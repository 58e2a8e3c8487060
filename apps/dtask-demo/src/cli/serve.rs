//! `serve` (the default command): the demo server and its dashboard.

use std::io::Write;
use std::path::PathBuf;

use dtask_demo::server::{DemoServer, Distributed, ServerConfig, Storage};
use dtask_http::MetricsRender;
use dtask_telemetry::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use super::api::ApiArgs;
use super::auth::AuthArgs;
use super::deploy::{DeployArgs, ModeArg};
use super::reconcile::ScheduleArgs;
use super::signals;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, env = "DTASK_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: String,
    /// Keep uploads and archives in memory instead of a directory.
    #[arg(long, conflicts_with = "data_dir")]
    pub(crate) in_memory: bool,
    /// Keep uploads and archives in DIR (default: a temporary directory
    /// removed when the server stops).
    #[arg(long, env = "DTASK_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The mode and, in Distributed mode, the services.
    #[command(flatten)]
    pub(crate) deploy: DeployArgs,
    /// The periodic reconciliation (Distributed mode).
    #[command(flatten)]
    pub(crate) reconcile: ScheduleArgs,
    /// Who may call the API.
    #[command(flatten)]
    pub(crate) auth: AuthArgs,
    /// Browser origins and webhooks.
    #[command(flatten)]
    pub(crate) api: ApiArgs,
}

/// Runs the server until Ctrl-C or SIGTERM: the API with workers (`serve`,
/// either mode) or without (`api`, Distributed mode).
pub(crate) async fn serve(args: ServeArgs, api_only: bool, metrics: Option<PrometheusHandle>) -> anyhow::Result<()> {
    let ServeArgs {
        listen,
        in_memory,
        data_dir,
        deploy,
        reconcile,
        auth,
        api,
    } = args;
    let authenticator = auth.authenticator()?;
    let api = api.config()?;
    let distributed = if api_only || deploy.mode == ModeArg::Distributed {
        Some(Distributed {
            infrastructure: deploy.connect().await?,
            run_workers: !api_only,
            kernel: deploy.kernel(),
            encryption: deploy.key_ring()?,
        })
    } else {
        None
    };
    // Distributed mode only: InProcess progress dies with the process, so
    // after a restart every task would look unknown.
    let reconciled = distributed
        .as_ref()
        .map(|d| (d.infrastructure.clone(), d.encryption.clone()));
    let storage = match (in_memory, data_dir) {
        (true, _) => Storage::InMemory,
        (false, Some(dir)) => Storage::Directory(dir),
        (false, None) => Storage::Temporary,
    };
    // Listen for the signals before announcing the address, so a client
    // that stops the server as soon as it reads the line stops it cleanly.
    let shutdown = signals::shutdown()?;
    let server = DemoServer::bind(ServerConfig {
        listen,
        storage,
        distributed,
        serializer: deploy.serializer,
        history: deploy.history().await?,
        api,
        auth: authenticator,
        operator_role: auth.operator_role,
        insecure_no_auth: auth.insecure_no_auth,
        metrics: metrics.map(|handle| MetricsRender::new(move || handle.render())),
        ..ServerConfig::default()
    })
    .await?;
    tracing::info!(addr = %server.local_addr(), "listening");
    let stop_reconciling = CancellationToken::new();
    let reconciler =
        reconciled.and_then(|(infrastructure, keys)| reconcile.spawn(&infrastructure, keys, stop_reconciling.clone()));
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "Dashboard: {}", server.dashboard_url())?;
    let url = server.dashboard_url();
    writeln!(
        stdout,
        "From a terminal: cargo run --release -- submit FILE... --server {}",
        url.trim_end_matches('/')
    )?;
    stdout.flush()?;
    drop(stdout);
    let served = server.run(shutdown).await;
    stop_reconciling.cancel();
    if let Some(reconciler) = reconciler {
        let _ = reconciler.await;
    }
    served?;
    Ok(())
}
