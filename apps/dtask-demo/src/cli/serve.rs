//! `serve` (the default command): the demo server and its dashboard.

use std::io::Write;
use std::path::PathBuf;

use dtask_demo::server::{DemoServer, Distributed, ServerConfig, Storage};

use super::deploy::{DeployArgs, ModeArg};
use super::signals;

/// Runs the server until Ctrl-C or SIGTERM: the API with workers (`serve`,
/// either mode) or without (`api`, Distributed mode).
pub(crate) async fn serve(
    listen: String,
    in_memory: bool,
    data_dir: Option<PathBuf>,
    deploy: DeployArgs,
    api_only: bool,
) -> anyhow::Result<()> {
    let distributed = if api_only || deploy.mode == ModeArg::Distributed {
        Some(Distributed {
            infrastructure: deploy.connect().await?,
            run_workers: !api_only,
            kernel: deploy.kernel(),
        })
    } else {
        None
    };
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
        ..ServerConfig::default()
    })
    .await?;
    tracing::info!(addr = %server.local_addr(), "listening");
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
    server.run(shutdown).await?;
    Ok(())
}
