//! Cancellations reaching a worker host through the tracker's
//! [`CancellationFeed`], on the in-memory backends with a feed the test
//! scripts: a request told, a gap, a feed that ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Notify;
use tokio::sync::mpsc::{self, UnboundedSender};

use super::shutdown_tests::{Gated, PATIENCE, Shared, Slow, api, shared, worker};
use super::*;
use crate::infra::{CancellationFeed, CancellationNotice, CancellationStream};

/// A feed whose notices the test sends; tells when the host starts reading
/// one it opened.
#[derive(Debug, Default)]
struct ScriptedFeed {
    senders: Mutex<Vec<UnboundedSender<CancellationNotice>>>,
    reading: Arc<Notify>,
}

impl ScriptedFeed {
    fn opened(&self) -> usize {
        self.senders.lock().unwrap().len()
    }

    /// Sends `notice` through the feed opened last.
    fn tell(&self, notice: CancellationNotice) {
        let senders = self.senders.lock().unwrap();
        senders.last().expect("an open feed").send(notice).unwrap();
    }

    /// Ends the feed opened last.
    fn end(&self) {
        if let Some(sender) = self.senders.lock().unwrap().last_mut() {
            // Its receiver gone with it, the other end is dropped.
            *sender = mpsc::unbounded_channel().0;
        }
    }
}

#[async_trait]
impl CancellationFeed for Arc<ScriptedFeed> {
    async fn cancellations(&self) -> Result<CancellationStream> {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        self.senders.lock().unwrap().push(sender);
        let reading = Arc::clone(&self.reading);
        // The host polls the feed once it counts on it.
        let first_poll = futures::stream::once(async move { reading.notify_one() }).filter_map(|()| async { None });
        let notices = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
        Ok(first_poll.chain(notices).boxed())
    }
}

/// A worker host following `feed`, running a task that waits for its
/// cancellation, started; the API host and the task's handle.
async fn running(feed: &Arc<ScriptedFeed>) -> (Shared, Host, Host, TaskHandle<Gated>, Gated) {
    let mut shared = shared();
    shared.infra.cancellations = Some(Arc::new(Arc::clone(feed)));
    let api = api(&shared);
    let task = Gated::new(Slow::UntilCancelled);
    let worker = worker(&shared, task.clone(), Duration::from_secs(5));
    feed.reading.notified().await;
    let handle = api.submit::<Gated>(()).await.unwrap();
    task.started.notified().await;
    (shared, api, worker, handle, task)
}

/// Asks the tracker to cancel the task, as an API process does; the
/// worker host can only learn of it from the feed.
async fn request(shared: &Shared, handle: &TaskHandle<Gated>) {
    let progress = shared.infra.progress.request_cancellation(handle.id()).await.unwrap();
    assert!(progress.cancel_requested);
}

async fn cancelled(handle: &TaskHandle<Gated>) {
    let outcome = tokio::time::timeout(PATIENCE, handle.wait())
        .await
        .expect("the task ends")
        .unwrap();
    assert_eq!(outcome.status(), TaskStatus::Cancelled, "{:?}", outcome.progress.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_feed_tells_stops_the_run() {
    let feed = Arc::new(ScriptedFeed::default());
    let (shared, _api, worker, handle, _task) = running(&feed).await;
    assert!(
        worker
            .inner
            .rt
            .follows_cancellations
            .load(std::sync::atomic::Ordering::Acquire)
    );
    request(&shared, &handle).await;
    feed.tell(CancellationNotice::Requested(handle.id()));
    cancelled(&handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_feed_rereads_the_running_tasks() {
    let feed = Arc::new(ScriptedFeed::default());
    let (shared, _api, _worker, handle, _task) = running(&feed).await;
    // The notice of this request is lost; the gap says so.
    request(&shared, &handle).await;
    feed.tell(CancellationNotice::Gap);
    cancelled(&handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_ends_is_opened_again_and_the_running_tasks_reread() {
    let feed = Arc::new(ScriptedFeed::default());
    let (shared, _api, _worker, handle, _task) = running(&feed).await;
    request(&shared, &handle).await;
    feed.end();
    feed.reading.notified().await;
    assert_eq!(feed.opened(), 2, "the host opened the feed again");
    cancelled(&handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_host_stops_following_the_feed() {
    let feed = Arc::new(ScriptedFeed::default());
    let shared = {
        let mut shared = shared();
        shared.infra.cancellations = Some(Arc::new(Arc::clone(&feed)));
        shared
    };
    let host = worker(&shared, Gated::new(Slow::Quick), Duration::from_secs(1));
    feed.reading.notified().await;
    let rt = Arc::downgrade(&host.inner.rt);
    host.shutdown().await;
    drop(host);
    assert!(rt.upgrade().is_none(), "the follower holds the runtime weakly");
    // The follower ended: the feed it read is dropped.
    let sender = feed.senders.lock().unwrap()[0].clone();
    tokio::time::timeout(PATIENCE, sender.closed())
        .await
        .expect("the follower drops its feed");
}

/// A tracker whose next `failures` reads fail.
#[derive(Debug)]
struct FailingReads {
    inner: crate::memory::MemoryProgressTracker,
    failures: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl crate::infra::ProgressTracker for FailingReads {
    async fn init(&self, progress: &TaskProgress) -> Result<()> {
        self.inner.init(progress).await
    }

    async fn update(&self, progress: &TaskProgress) -> Result<()> {
        self.inner.update(progress).await
    }

    async fn complete(&self, progress: &TaskProgress) -> Result<()> {
        self.inner.complete(progress).await
    }

    async fn get(&self, task_id: TaskId) -> Result<Option<TaskProgress>> {
        let failing = (self.failures).fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if failing.is_ok() {
            return Err(Error::backend("tracker", "read failed"));
        }
        self.inner.get(task_id).await
    }

    async fn stream(&self, task_id: TaskId) -> Result<crate::infra::ProgressStream> {
        self.inner.stream(task_id).await
    }

    async fn request_cancellation(&self, task_id: TaskId) -> Result<TaskProgress> {
        self.inner.request_cancellation(task_id).await
    }

    async fn list(&self, query: &crate::infra::ProgressQuery) -> Result<crate::infra::ProgressPage> {
        self.inner.list(query).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_that_cannot_be_read_after_a_gap_is_read_again() {
    let feed = Arc::new(ScriptedFeed::default());
    let tracker = Arc::new(FailingReads {
        inner: crate::memory::MemoryProgressTracker::new(),
        failures: std::sync::atomic::AtomicU32::new(0),
    });
    let mut shared = shared();
    shared.infra.progress = tracker.clone();
    shared.infra.cancellations = Some(Arc::new(Arc::clone(&feed)));
    let api = api(&shared);
    let task = Gated::new(Slow::UntilCancelled);
    let _worker = worker(&shared, task.clone(), Duration::from_secs(5));
    feed.reading.notified().await;
    let handle = api.submit::<Gated>(()).await.unwrap();
    task.started.notified().await;

    request(&shared, &handle).await;
    // The read after the gap fails: the flag is read again later.
    tracker.failures.store(1, std::sync::atomic::Ordering::SeqCst);
    feed.tell(CancellationNotice::Gap);
    cancelled(&handle).await;
    assert_eq!(
        tracker.failures.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the first read failed"
    );
}
