//! Cancellation through the token every step receives, step timeouts and
//! the task timeout.

mod support;

use dtask::prelude::*;
use dtask::testing::{Fault, TestHost};
use dtask::{CancelOutcome, StepStatus};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use support::{FetchFastest, FetchRequest, Journal, OrderRequest, PlaceOrder};

/// Waits until `step` is running.
async fn until_running(host: &TestHost, id: TaskId, step: &str) {
    let mut stream = host.host().stream(id).await.unwrap();
    while let Some(progress) = stream.next().await {
        if progress
            .steps
            .iter()
            .any(|s| s.name == step && s.status == StepStatus::Running)
        {
            return;
        }
    }
    panic!("{step} never ran");
}

#[tokio::test]
async fn cancelling_fires_the_running_step_token_then_compensates() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    host.inject("Ship", Fault::Hang);
    let handle = host
        .submit::<PlaceOrder>(OrderRequest {
            item: "piano".into(),
            ..OrderRequest::default()
        })
        .await
        .unwrap();
    until_running(&host, handle.id(), "Ship").await;

    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::Requested);
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Cancelled);
    assert!(outcome.progress.cancel_requested);
    assert_eq!(outcome.progress.steps[2].status, StepStatus::Cancelled);
    assert_eq!(
        journal.entries(),
        ["run Reserve", "run Charge", "undo Charge", "undo Reserve"]
    );
    let timeline = host.timeline(handle.id());
    assert!(timeline.contains(&"CancellationRequested".to_owned()));
    assert_eq!(timeline.last().map(String::as_str), Some("Cancelled"));
    assert_eq!(
        handle.cancel().await.unwrap(),
        CancelOutcome::AlreadyEnded(TaskStatus::Cancelled)
    );
}

#[tokio::test]
async fn a_task_not_declared_cancellable_refuses() {
    let host = TestHost::new(FetchFastest::default());
    host.inject("MirrorA", Fault::Hang);
    host.inject("MirrorB", Fault::Hang);
    let handle = host
        .submit::<FetchFastest>(FetchRequest { path: "/x".into() })
        .await
        .unwrap();
    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::NotCancellable);
    assert!(!handle.progress().await.unwrap().cancel_requested);
}

#[tokio::test]
async fn cancelling_an_unknown_task_is_not_found() {
    let host = TestHost::new(PlaceOrder::default());
    let error = host.host().cancel(TaskId::new()).await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CrawlRequest;

/// One step limited to 1 s per attempt, retried twice.
#[dtask::task(name = "Crawl", request = CrawlRequest, response = (), queue = "crawl", mode = InProcess)]
#[custom_step(Fetch, order = 1, timeout_secs = 1)]
#[retry(Fetch, max_retries = 2, backoff = Constant, base_delay_ms = 100)]
#[derive(Debug, Default)]
struct Crawl;

impl crawl::Steps for Crawl {
    async fn fetch(&self, _cx: &StepContext, _input: crawl::FetchInput<'_>) -> Result<(), StepError> {
        Ok(())
    }

    fn response(&self, _outputs: crawl::Outputs<'_>) -> Result<(), StepError> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_step_timeout_fails_and_is_retried() {
    let host = TestHost::new(Crawl);
    host.inject("Fetch", Fault::Hang);
    let started = tokio::time::Instant::now();
    let handle = host.submit::<Crawl>(CrawlRequest).await.unwrap();
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Compensated);
    assert_eq!(outcome.progress.steps[0].attempts, 3);
    assert!(outcome.progress.error.unwrap().contains("timed out after 1000 ms"));
    let elapsed = started.elapsed().as_millis();
    assert!(
        (3200..3300).contains(&elapsed),
        "3 × 1 s + 2 × 100 ms, took {elapsed} ms"
    );
}

#[tokio::test(start_paused = true)]
async fn the_task_timeout_stops_the_saga_and_compensates() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    host.inject("Ship", Fault::Hang);
    let outcome = host
        .run::<PlaceOrder>(OrderRequest {
            item: "clock".into(),
            ..OrderRequest::default()
        })
        .await
        .unwrap();

    assert_eq!(outcome.status(), TaskStatus::Compensated);
    assert_eq!(outcome.progress.error.as_deref(), Some("the task timed out after 30 s"));
    assert_eq!(journal.entries()[2..], ["undo Charge", "undo Reserve"]);
}
