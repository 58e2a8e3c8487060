//! The Prometheus recorder of dtask's metrics.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::TelemetryError;

/// The histogram buckets of every `_seconds` metric: from a millisecond
/// (a step of an in-process task) to an hour (a long transcode).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// How often the recorder's histograms are drained into their buckets
/// between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the global Prometheus recorder, and the task that keeps it up
/// to date (in the current tokio runtime). Must run before the host is
/// built: the host registers its metrics with the recorder installed then.
pub(crate) fn install() -> Result<PrometheusHandle, TelemetryError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| TelemetryError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| TelemetryError::Metrics(e.to_string()))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
