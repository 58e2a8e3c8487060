//! `reconcile`: deletes the objects of failed, cancelled, compensated and
//! unknown tasks from the task buckets (Distributed mode), and those of
//! completed tasks past `DTASK_COMPLETED_RETENTION_DAYS` when set; and the
//! periodic run of the same in the `api` and `serve` processes.

use std::time::Duration;

use anyhow::bail;
use dtask::Infrastructure;
use dtask::codec::KeyRing;
use dtask::reconcile::{ReconcileMode, Reconciler, spawn_periodic};
use dtask_demo::CreateZipFromFiles;
use dtask_demo::video::{TRANSCODED_BUCKET, VideoTranscode};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::deploy::DeployArgs;

/// The periodic reconciliation of the `api` and `serve` processes in
/// Distributed mode.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ScheduleArgs {
    /// How often to delete orphaned objects, in seconds (Distributed mode;
    /// 0 disables it).
    #[arg(
        long = "reconcile-every-secs",
        env = "DTASK_RECONCILE_EVERY_SECS",
        default_value_t = 600
    )]
    every_secs: u64,
    /// Objects written less than this many seconds ago are never deleted.
    #[arg(
        long = "reconcile-grace-secs",
        env = "DTASK_RECONCILE_GRACE_SECS",
        default_value_t = 3600
    )]
    grace_secs: u64,
    /// Completed tasks' objects (their uploads and results) older than this
    /// many days are deleted too; unset: kept for ever.
    #[arg(long = "completed-retention-days", env = "DTASK_COMPLETED_RETENTION_DAYS")]
    completed_retention_days: Option<u64>,
}

impl ScheduleArgs {
    /// Starts the periodic reconciler on `infrastructure` until `shutdown`
    /// fires; `None` when disabled.
    pub(crate) fn spawn(
        &self,
        infrastructure: &Infrastructure,
        keys: Option<KeyRing>,
        shutdown: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        if self.every_secs == 0 {
            tracing::info!("periodic reconciliation disabled");
            return None;
        }
        let every = Duration::from_secs(self.every_secs);
        let grace = Duration::from_secs(self.grace_secs);
        let reconciler = reconciler(infrastructure, keys, grace, self.completed_retention_days);
        tracing::info!(
            every_secs = self.every_secs,
            grace_secs = self.grace_secs,
            completed_retention_days = self.completed_retention_days,
            buckets = ?reconciler.buckets(),
            "periodic reconciliation on"
        );
        Some(spawn_periodic(reconciler, every, shutdown))
    }
}

/// The reconciler of the demo's buckets (those of both tasks),
/// opening sealed saga states with `keys`, deleting completed tasks'
/// objects after `completed_retention_days` when set.
fn reconciler(
    infrastructure: &Infrastructure,
    keys: Option<KeyRing>,
    grace: Duration,
    completed_retention_days: Option<u64>,
) -> Reconciler {
    let mut reconciler = Reconciler::from_infrastructure(infrastructure)
        .with_task::<CreateZipFromFiles>()
        .with_task::<VideoTranscode>()
        .with_buckets([TRANSCODED_BUCKET])
        .with_grace(grace);
    if let Some(days) = completed_retention_days {
        reconciler = reconciler.with_completed_retention(Duration::from_secs(days.saturating_mul(24 * 3600)));
    }
    match keys {
        Some(keys) => reconciler.with_key_ring(keys),
        None => reconciler,
    }
}

/// `reconcile [--dry-run] [--grace-secs N]`: one run, its report on
/// stdout. Fails when a deletion failed.
pub(crate) async fn reconcile(
    deploy: DeployArgs,
    dry_run: bool,
    grace_secs: u64,
    completed_retention_days: Option<u64>,
) -> anyhow::Result<()> {
    let infrastructure = deploy.connect().await?;
    let mode = if dry_run {
        ReconcileMode::DryRun
    } else {
        ReconcileMode::Delete
    };
    let grace = Duration::from_secs(grace_secs);
    let report = reconciler(&infrastructure, deploy.key_ring()?, grace, completed_retention_days)
        .run(mode)
        .await?;
    println!("{report}");
    if !report.failed.is_empty() {
        bail!("{} of the orphans could not be deleted", report.failed.len());
    }
    Ok(())
}
