//! A worker host's one subscription to every cancellation request, when
//! the tracker offers a [`CancellationFeed`]: a request for a task running
//! here stops its run, as [`Host::cancel`](super::Host::cancel) does for a
//! run in its own process. While the feed is followed, the workers open no
//! progress stream per task (see `worker::drive`); a run still checks the
//! cancellation flag once, after it registered, for a request made before.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;

use crate::id::TaskId;
use crate::infra::{CancellationFeed, CancellationNotice};
use crate::kernel::{Runtime, StopReason};

/// Follows `feed` for as long as the runtime lives, opening it again (with
/// a capped backoff) when it fails or ends. Holds the runtime weakly, so a
/// dropped host ends it.
pub(super) fn follow(rt: &Arc<Runtime>, feed: Arc<dyn CancellationFeed>) -> impl Future<Output = ()> + Send + 'static {
    let dropped = rt.dropped.clone();
    let rt = Arc::downgrade(rt);
    async move {
        tokio::select! {
            () = follow_until_dropped(&rt, feed.as_ref()) => {}
            () = dropped.cancelled() => {}
        }
    }
}

async fn follow_until_dropped(rt: &Weak<Runtime>, feed: &dyn CancellationFeed) {
    let mut pause = Duration::from_millis(100);
    let mut reopened = false;
    loop {
        match feed.cancellations().await {
            Ok(mut notices) => {
                pause = Duration::from_millis(100);
                let Some(live) = rt.upgrade() else { return };
                live.follows_cancellations.store(true, Ordering::Release);
                if reopened {
                    // Requests made while it was closed.
                    recheck(&live).await;
                }
                drop(live);
                while let Some(notice) = notices.next().await {
                    let Some(rt) = rt.upgrade() else { return };
                    match notice {
                        CancellationNotice::Requested(task_id) => stop(&rt, task_id),
                        CancellationNotice::Gap => recheck(&rt).await,
                    }
                }
                let Some(live) = rt.upgrade() else { return };
                // New runs follow their own task's progress until it is
                // back; the runs started meanwhile are rechecked then.
                live.follows_cancellations.store(false, Ordering::Release);
                tracing::warn!("the cancellation feed ended; opening it again");
                reopened = true;
            }
            Err(error) => {
                let retry_in_ms = pause.as_millis() as u64;
                tracing::warn!(%error, retry_in_ms, "cannot open the cancellation feed; each run follows its own task's progress meanwhile");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// Stops `task_id`'s run in this host, if one runs here.
fn stop(rt: &Runtime, task_id: TaskId) {
    if let Some(control) = rt.local_control(task_id) {
        tracing::debug!(%task_id, "cancellation requested: stopping the run");
        control.stop(StopReason::Cancelled);
    }
}

/// Reads the cancellation flag of every task running here again, after
/// notices may have been missed. The tasks whose flag could not be read
/// are read again in the background, with a capped backoff, for as long as
/// they run here.
async fn recheck(rt: &Arc<Runtime>) {
    let unread = read_flags(rt, rt.running_ids()).await;
    if !unread.is_empty() {
        tokio::spawn(read_until_known(Arc::downgrade(rt), unread));
    }
}

/// Stops each of `tasks` whose flag says it was asked to cancel; returns
/// those whose flag could not be read.
async fn read_flags(rt: &Runtime, tasks: Vec<TaskId>) -> Vec<TaskId> {
    let mut unread = Vec::new();
    for task_id in tasks {
        match rt.infra.progress.get(task_id).await {
            Ok(Some(progress)) if progress.cancel_requested => stop(rt, task_id),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%task_id, %error, "cannot read whether the task was asked to cancel; reading it again");
                unread.push(task_id);
            }
        }
    }
    unread
}

async fn read_until_known(rt: Weak<Runtime>, mut unread: Vec<TaskId>) {
    let mut pause = Duration::from_millis(200);
    while !unread.is_empty() {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
        let Some(rt) = rt.upgrade() else { return };
        // Those that ended (or left) meanwhile need no answer.
        unread.retain(|task_id| rt.local_control(*task_id).is_some());
        unread = read_flags(&rt, unread).await;
    }
}
