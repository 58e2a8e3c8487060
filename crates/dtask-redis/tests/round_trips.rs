//! How many commands each operation sends, counted by watching the server
//! (`MONITOR`): the commands naming this test's key prefix, not counting
//! those that scripts run inside the server.

mod support;

use std::time::Duration;

use dtask_core::conformance::PATIENCE;
use dtask_core::infra::{
    DistributedLock, IdempotencyStore, LockWithState, ProgressQuery, ProgressTracker, ProgressWrite, SagaStateStore,
    StateWithProgress, StoredState,
};
use dtask_core::task::StepHost;
use dtask_core::{Codec, EventKind, TaskId};
use futures::StreamExt;
use redis::Value;

use support::{after, config, connect, delete_prefix, new_task, require_redis, unique_prefix, url};

/// Counts the commands naming `prefix` that the server runs.
struct Watch {
    prefix: String,
    lines: futures::stream::BoxStream<'static, String>,
    marks: u32,
}

impl Watch {
    async fn start(prefix: &str) -> Self {
        require_redis().await;
        let client = redis::Client::open(url(0)).unwrap();
        let monitor = client.get_async_monitor().await.expect("MONITOR");
        Self {
            prefix: prefix.to_owned(),
            lines: monitor.into_on_message::<String>().boxed(),
            marks: 0,
        }
    }

    /// The commands run since the last call, once a marker sent after them
    /// shows up.
    async fn count(&mut self) -> usize {
        self.marks += 1;
        let marker = format!("{}mark-{}", self.prefix, self.marks);
        let mut conn = support::raw(0).await;
        redis::cmd("ECHO")
            .arg(&marker)
            .query_async::<Value>(&mut conn)
            .await
            .unwrap();
        let mut count = 0;
        let watch = async {
            while let Some(line) = self.lines.next().await {
                if line.contains(&marker) {
                    return;
                }
                if line.contains(&self.prefix) && !line.contains(" lua]") {
                    count += 1;
                }
            }
        };
        tokio::time::timeout(PATIENCE, watch)
            .await
            .expect("the marker never came");
        count
    }
}

#[tokio::test]
async fn each_operation_costs_what_the_readme_says() {
    let prefix = unique_prefix();
    let backends = connect(&config(&prefix)).await;
    let (tracker, state, idempotency, lock, settlement) = (
        backends.progress(),
        backends.state(),
        backends.idempotency(),
        backends.lock(),
        backends.settlement(),
    );
    let take = backends
        .lock_with_state()
        .expect("one server keeps the locks and the states");
    let mut watch = Watch::start(&prefix).await;

    // Load every script once, so that no count includes a SCRIPT LOAD.
    let warm = new_task();
    tracker.init(&warm).await.unwrap();
    tracker
        .update(&after(&warm, EventKind::Started { host: StepHost::Worker }))
        .await
        .unwrap();
    tracker.request_cancellation(warm.task_id).await.unwrap();
    tracker.list(&ProgressQuery::default()).await.unwrap();
    let warm_guard = lock.try_acquire("warm", Duration::from_secs(5)).await.unwrap().unwrap();
    warm_guard.extend(Duration::from_secs(5)).await.unwrap();
    warm_guard.release().await.unwrap();
    let payload = Codec::default().encode(&1).unwrap();
    state
        .save(
            TaskId::new(),
            StoredState {
                fence: 1,
                payload: payload.clone(),
            },
        )
        .await
        .unwrap();
    idempotency
        .claim("warm", TaskId::new(), Duration::from_secs(5))
        .await
        .unwrap();
    idempotency.finish("warm", "x").await.unwrap();
    let warm_take = take.try_acquire_loading("warm-take", Duration::from_secs(5), TaskId::new());
    warm_take.await.unwrap().unwrap().guard.release().await.unwrap();
    let settled = after(&warm, EventKind::Completed);
    (settlement.save_with_progress(
        warm.task_id,
        StoredState {
            fence: 1,
            payload: payload.clone(),
        },
        &settled,
    ))
    .await
    .unwrap();
    watch.count().await;

    let progress = new_task();
    let id = progress.task_id;
    tracker.init(&progress).await.unwrap();
    assert_eq!(watch.count().await, 1, "init");
    let running = after(&progress, EventKind::Started { host: StepHost::Worker });
    tracker.update(&running).await.unwrap();
    assert_eq!(watch.count().await, 1, "update");
    tracker.get(id).await.unwrap();
    assert_eq!(watch.count().await, 1, "get");
    let mut stream = tracker.stream(id).await.unwrap();
    stream.next().await;
    assert_eq!(watch.count().await, 2, "stream (SUBSCRIBE, HMGET)");
    tracker.request_cancellation(id).await.unwrap();
    assert_eq!(watch.count().await, 1, "request_cancellation");
    tracker.complete(&after(&running, EventKind::Completed)).await.unwrap();
    assert_eq!(watch.count().await, 1, "complete");
    tracker.list(&ProgressQuery::default()).await.unwrap();
    // Two round trips: the range script, then one pipeline of an HMGET per task.
    assert_eq!(watch.count().await, 1 + 2, "list");

    let settling = new_task();
    tracker.init(&settling).await.unwrap();
    watch.count().await;
    let settled = after(&settling, EventKind::Started { host: StepHost::Worker });
    let state_now = StoredState {
        fence: 1,
        payload: payload.clone(),
    };
    let written = (settlement.save_with_progress(settling.task_id, state_now, &settled))
        .await
        .unwrap();
    assert_eq!(written, ProgressWrite::Stored);
    assert_eq!(
        watch.count().await,
        1,
        "a settlement: the state saved and the progress shown at once"
    );
    let taken = take
        .try_acquire_loading("take", Duration::from_secs(5), settling.task_id)
        .await
        .unwrap()
        .expect("a free lock");
    assert_eq!(watch.count().await, 1, "a lock taken and the state read at once");
    assert!(taken.state.unwrap().is_some(), "the state saved just before");
    taken.guard.release().await.unwrap();
    watch.count().await;

    let task = TaskId::new();
    state.save(task, StoredState { fence: 1, payload }).await.unwrap();
    assert_eq!(watch.count().await, 1, "state save");
    state.load(task).await.unwrap();
    assert_eq!(watch.count().await, 1, "state load");
    idempotency
        .claim("key", TaskId::new(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(watch.count().await, 1, "idempotency claim");
    idempotency.finish("key", "digest").await.unwrap();
    assert_eq!(watch.count().await, 1, "idempotency finish");
    let guard = lock.try_acquire("job", Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(watch.count().await, 1, "lock acquire");
    guard.extend(Duration::from_secs(5)).await.unwrap();
    assert_eq!(watch.count().await, 1, "lock extend");
    guard.release().await.unwrap();
    assert_eq!(watch.count().await, 1, "lock release");
    drop(stream);
    delete_prefix(0, &prefix).await;
}
