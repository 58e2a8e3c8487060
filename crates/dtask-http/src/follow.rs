//! Following a task: its progress snapshots as a stream that ends with the
//! task. A leaf that the routes (SSE, WebSocket) and the webhooks share.

use dtask_core::{Caller, TaskId, TaskProgress};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::problem::{ApiResult, Problem, kinds};

/// A task's snapshots: the current one, then every change with a newer
/// revision (so revisions strictly increase), ending after the terminal
/// one.
///
/// # Errors
/// `404` for an unknown task, and for a task `caller` may not see.
pub(crate) async fn snapshots(caller: &Caller, task_id: TaskId) -> ApiResult<BoxStream<'static, TaskProgress>> {
    let stream = caller.stream(task_id).await.map_err(|e| match e {
        e if e.is_not_found() => kinds::task_not_found(format!("no task {task_id}")),
        e => Problem::from(e),
    })?;
    Ok(stream
        .scan((None::<u64>, false), |(last, ended), progress| {
            if *ended {
                return futures::future::ready(None);
            }
            let fresh = last.is_none_or(|l| progress.revision > l);
            if fresh {
                *last = Some(progress.revision);
                *ended = progress.is_terminal();
            }
            futures::future::ready(Some(fresh.then_some(progress)))
        })
        .filter_map(futures::future::ready)
        .boxed())
}
