//! Progress: what a snapshot carries, a running step's own reports, and a
//! stream that shows every change of a task.

use std::sync::Arc;

use dtask::prelude::*;
use dtask::testing::TestHost;
use dtask::{EventKind, StepStatus};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Job;

/// One step that reports half-way, then waits to be released.
#[dtask::task(name = "Halfway", request = Job, response = (), queue = "halfway", mode = InProcess)]
#[custom_step(Work, order = 1)]
#[derive(Debug, Default)]
struct Halfway {
    release: Arc<Notify>,
}

impl halfway::Steps for Halfway {
    async fn work(&self, cx: &StepContext, _input: halfway::WorkInput<'_>) -> Result<(), StepError> {
        cx.report_progress(0.5, "half of the bytes".to_owned());
        self.release.notified().await;
        Ok(())
    }

    fn response(&self, _outputs: halfway::Outputs<'_>) -> Result<(), StepError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_running_step_reports_its_own_progress_in_the_snapshot() {
    let release = Arc::new(Notify::new());
    let host = TestHost::new(Halfway {
        release: Arc::clone(&release),
    });
    let handle = host.submit::<Halfway>(Job).await.unwrap();
    let mut stream = handle.stream().await.unwrap();
    let mut seen_half = None;
    let mut revisions = Vec::new();
    let mut last = None;
    while let Some(progress) = stream.next().await {
        revisions.push(progress.revision);
        let step = &progress.steps[0];
        if seen_half.is_none() && step.fraction == Some(0.5) {
            assert_eq!(step.status, StepStatus::Running);
            assert_eq!(step.message.as_deref(), Some("half of the bytes"));
            assert_eq!(progress.current_step.as_deref(), Some("Work"));
            assert_eq!(progress.percent, 50.0);
            assert_eq!(progress.status, TaskStatus::Running);
            seen_half = Some(progress.revision);
            release.notify_one();
        }
        last = Some(progress);
    }
    assert!(seen_half.is_some(), "the step's report reached the stream");
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    let last = last.unwrap();
    assert!(last.is_terminal(), "the stream ends after the terminal snapshot");
    assert_eq!(last.status, TaskStatus::Completed);
    assert!(host.events(handle.id()).iter().any(|e| matches!(
        &e.kind,
        EventKind::StepProgress { fraction, .. } if *fraction == 0.5
    )));
}

#[tokio::test]
async fn the_snapshot_serializes_with_camel_case_names() {
    let host = TestHost::new(Halfway::default());
    let handle = host.submit::<Halfway>(Job).await.unwrap();
    let json = serde_json::to_value(handle.progress().await.unwrap()).unwrap();
    for field in [
        "taskId",
        "taskName",
        "status",
        "totalSteps",
        "completedSteps",
        "percent",
        "steps",
        "isComplete",
        "revision",
        "createdAt",
        "updatedAt",
        "cancellable",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    assert_eq!(json["taskName"], "Halfway");
    assert_eq!(json["steps"][0]["name"], "Work");
    assert_eq!(json["steps"][0]["host"], "worker");
}
