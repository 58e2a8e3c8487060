//! `worker`: consumes the queue and runs the Worker steps, until Ctrl-C or
//! SIGTERM.

use dtask::Mode;
use dtask_demo::server::logged_host_builder;

use super::deploy::DeployArgs;
use super::signals;

/// Runs a worker process.
pub(crate) async fn worker(deploy: DeployArgs, concurrency: usize) -> anyhow::Result<()> {
    let shutdown = signals::shutdown()?;
    let infrastructure = deploy.connect().await?;
    let mut builder = logged_host_builder();
    if let Some(format) = deploy.serializer {
        builder = builder.serializer(format);
    }
    let host = builder
        .mode(Mode::Distributed)
        .infrastructure(infrastructure)
        .kernel_settings(deploy.kernel())
        .worker_concurrency(concurrency)
        .build()?;
    tracing::info!(pid = std::process::id(), concurrency, "worker ready");
    println!("Worker ready (pid {})", std::process::id());
    shutdown.await;
    tracing::info!("stopping: running tasks reach a step boundary");
    host.shutdown().await;
    Ok(())
}
