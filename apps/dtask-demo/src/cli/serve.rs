//! `serve` (the default command): the demo server and its dashboard.

use std::io::Write;
use std::path::PathBuf;

use dtask_demo::server::{DemoServer, ServerConfig, Storage};

use super::signals;

/// Runs the server until Ctrl-C or SIGTERM.
pub(crate) async fn serve(listen: String, in_memory: bool, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
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
