//! How deep the host's queues are: read on demand ([`Host::queue_depths`])
//! and sampled into the `dtask_queue_waiting` and `dtask_queue_unsettled`
//! gauges every [`SAMPLE_INTERVAL`].

use std::sync::Arc;
use std::time::Duration;

use super::Host;
use crate::error::{Error, Result};
use crate::infra::{QueueDepth, QueueDepths};
use crate::kernel::Runtime;

/// How often the gauges are refreshed.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

impl Host {
    /// The depth of each queue the host's tasks declare, by queue name.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the queue backend does not tell
    /// ([`HostBuilder::queue_depths`](super::HostBuilder::queue_depths)); a
    /// backend error.
    pub async fn queue_depths(&self) -> Result<Vec<(String, QueueDepth)>> {
        let depths = self.inner.rt.infra.depths.as_ref().ok_or_else(|| {
            Error::Unsupported("this host's queue backend does not tell its depth (HostBuilder::queue_depths)".into())
        })?;
        let queues = self.queues();
        let mut out = Vec::with_capacity(queues.len());
        for queue in queues {
            let depth = depths.depth(&queue).await?;
            out.push((queue, depth));
        }
        Ok(out)
    }
}

/// Refreshes the gauges of `queues` until the host shuts down.
pub(super) async fn sample(rt: Arc<Runtime>, depths: Arc<dyn QueueDepths>, queues: Vec<String>) {
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = rt.shutdown.cancelled() => return,
        }
        for queue in &queues {
            let Some(metrics) = rt.metrics.queue(queue) else {
                continue;
            };
            match depths.depth(queue).await {
                Ok(depth) => {
                    metrics.waiting.set(depth.waiting as f64);
                    if let Some(unsettled) = depth.in_flight {
                        metrics.unsettled.set(unsettled as f64);
                    }
                }
                // The next sample tries again; the gauge keeps its value.
                Err(error) => tracing::debug!(queue, %error, "could not read the queue's depth"),
            }
        }
    }
}
