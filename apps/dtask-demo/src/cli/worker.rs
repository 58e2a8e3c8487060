//! `worker`: consumes the queue and runs the Worker steps, until Ctrl-C or
//! SIGTERM.
//!
//! On the first signal the worker stops taking messages, lets its running
//! steps finish for up to `--shutdown-grace-secs` (`DTASK_SHUTDOWN_GRACE_SECS`,
//! default 30 s), cancels the ones still running after that, hands every
//! unfinished task back to the queue with its lock released, and exits 0.
//! A second signal exits at once (status 130).

use anyhow::Context;
use dtask::Mode;
use dtask_demo::VideoTranscode;
use dtask_demo::server::logged_host_builder;
use dtask_http::MetricsRender;
use dtask_telemetry::PrometheusHandle;

use super::deploy::DeployArgs;
use super::signals;

/// Runs a worker process; with `metrics_listen`, serves its metrics and
/// readiness there.
pub(crate) async fn worker(
    deploy: DeployArgs,
    concurrency: usize,
    metrics_listen: Option<String>,
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<()> {
    let shutdown = signals::shutdown()?;
    let video = VideoTranscode::from_env()?;
    video.ffmpeg().check().await?;
    let infrastructure = deploy.connect().await?;
    let mut builder = deploy.configure(logged_host_builder(video))?;
    if let Some((history, settings)) = deploy.history().await? {
        builder = builder.history_with(history, settings);
    }
    let host = builder
        .mode(Mode::Distributed)
        .infrastructure(infrastructure)
        .kernel_settings(deploy.kernel())
        .worker_concurrency(concurrency)
        .build()?;
    let mut metrics_address = None;
    if let Some(addr) = metrics_listen {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        let local = listener.local_addr()?;
        let render = metrics.map(|handle| MetricsRender::new(move || handle.render()));
        let router = dtask_http::worker_router(host.clone(), render);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the metrics endpoint stopped");
            }
        });
        tracing::info!(%local, "serving /metrics, /healthz and /readyz");
        metrics_address = Some(local);
    }
    tracing::info!(pid = std::process::id(), concurrency, "worker ready");
    println!("Worker ready (pid {})", std::process::id());
    if let Some(local) = metrics_address {
        println!("Metrics: http://{local}/metrics");
    }
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
