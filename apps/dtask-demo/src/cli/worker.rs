//! `worker`: consumes the queue and runs the Worker steps, until Ctrl-C or
//! SIGTERM.
//!
//! On the first signal the worker stops taking messages, lets its running
//! steps finish for up to `--shutdown-grace-secs` (`DTASK_SHUTDOWN_GRACE_SECS`,
//! default 30 s), cancels the ones still running after that, hands every
//! unfinished task back to the queue with its lock released, and exits 0.
//! A second signal exits at once (status 130).

use dtask::Mode;
use dtask_demo::server::logged_host_builder;

use super::deploy::DeployArgs;
use super::signals;

/// Runs a worker process.
pub(crate) async fn worker(deploy: DeployArgs, concurrency: usize) -> anyhow::Result<()> {
    let shutdown = signals::shutdown()?;
    let infrastructure = deploy.connect().await?;
    let mut builder = deploy.configure(logged_host_builder())?;
    if let Some((history, settings)) = deploy.history().await? {
        builder = builder.history_with(history, settings);
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
    let grace = deploy.kernel().shutdown_grace;
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "stopping: no new tasks; running steps may finish within the grace, then their tasks are handed back"
    );
    host.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
