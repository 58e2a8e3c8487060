//! The background reconciler: a run in Delete mode every period.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{ReconcileMode, ReconcileReport, Reconciler};

/// Spawns a task that runs `reconciler` in [`ReconcileMode::Delete`] at
/// once and then every `every`, logging each run's summary (`info`) or
/// error (`warn`) with `tracing`, until `shutdown` fires. A run in
/// progress when it fires is dropped between two calls to the services
/// (see [`Reconciler::run`]'s cancel safety).
///
/// A zero period disables it: the task ends at once. A run that takes
/// longer than the period delays the next one rather than piling up.
///
/// # Panics
/// Outside a tokio runtime.
pub fn spawn_periodic(reconciler: Reconciler, every: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        if every.is_zero() {
            tracing::info!("periodic reconciliation disabled (zero period)");
            return;
        }
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                result = reconciler.run(ReconcileMode::Delete) => match result {
                    Ok(report) => log_summary(&report),
                    Err(error) => tracing::warn!(%error, "reconciliation failed; retrying next period"),
                },
            }
        }
        tracing::debug!("periodic reconciliation stopped");
    })
}

fn log_summary(report: &ReconcileReport) {
    let kept = &report.kept;
    tracing::info!(
        deleted = report.orphans.len(),
        deleted_bytes = report.orphan_bytes(),
        tasks = report.orphan_tasks(),
        failed = report.failed.len(),
        kept_live = kept.live,
        kept_completed = kept.completed,
        kept_too_young = kept.too_young,
        kept_foreign = kept.foreign,
        kept_unreadable = kept.unreadable,
        "reconciled the task buckets"
    );
}
