//! The kernel on a linear saga: order, data flow, retries with backoff,
//! compensation in reverse order of completion, compensation failures.

mod support;

use dtask::testing::{Fault, TestHost};
use dtask::{EventKind, StepStatus, TaskStatus};
use support::{Journal, OrderRequest, OrderResponse, PlaceOrder};

fn order(item: &str) -> OrderRequest {
    OrderRequest {
        item: item.to_owned(),
        ..OrderRequest::default()
    }
}

#[tokio::test]
async fn steps_run_in_order_and_each_sees_the_data_before_it() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    let handle = host.submit::<PlaceOrder>(order("book")).await.unwrap();
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Completed);
    assert_eq!(
        outcome.response,
        Some(OrderResponse {
            reservation: "res-book".into(),
            payment: "pay-for-res-book".into(),
            tracking: "res-book/pay-for-res-book".into(),
        })
    );
    assert_eq!(journal.entries(), ["run Reserve", "run Charge", "run Ship"]);
    assert_eq!(
        host.timeline(handle.id()),
        [
            "Submitted",
            "HandedOff orders",
            "Started worker",
            "StepStarted Reserve #1",
            "StepCompleted Reserve",
            "StepStarted Charge #1",
            "StepCompleted Charge",
            "StepStarted Ship #1",
            "StepCompleted Ship",
            "Completed",
        ]
    );
    let progress = outcome.progress;
    assert_eq!((progress.total_steps, progress.completed_steps), (3, 3));
    assert_eq!(progress.percent, 100.0);
    assert_eq!(progress.success, Some(true));
    assert!(progress.is_complete && progress.completed_at.is_some());
    let orders: Vec<_> = progress.steps.iter().map(|s| s.completion_order).collect();
    assert_eq!(orders, [Some(1), Some(2), Some(3)]);
    assert!(
        progress
            .steps
            .iter()
            .all(|s| s.attempts == 1 && s.status == StepStatus::Completed)
    );
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_waits_200_400_800_1600_3200_ms() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    let request = OrderRequest {
        charge_failures: 5,
        ..order("lamp")
    };
    let handle = host.submit::<PlaceOrder>(request).await.unwrap();
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Completed);
    assert_eq!(journal.gaps_ms(), [200, 400, 800, 1600, 3200]);
    assert_eq!(outcome.progress.steps[1].attempts, 6);
    let announced: Vec<u128> = host
        .events(handle.id())
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepFailed { retry_in: Some(d), .. } => Some(d.as_millis()),
            _ => None,
        })
        .collect();
    assert_eq!(announced, [200, 400, 800, 1600, 3200]);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_compensate_the_completed_steps_only() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    let request = OrderRequest {
        charge_failures: 6,
        ..order("desk")
    };
    let outcome = host.run::<PlaceOrder>(request).await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Compensated);
    let error = outcome.progress.error.as_deref().unwrap();
    assert!(
        error.contains("Charge") && error.contains("card declined (attempt 6)"),
        "{error}"
    );
    assert_eq!(journal.count("run Charge"), 6);
    assert_eq!(journal.entries().last().map(String::as_str), Some("undo Reserve"));
    assert_eq!(journal.count("undo Charge"), 0, "a failed step is not undone");
    assert_eq!(journal.count("run Ship"), 0);
    let statuses: Vec<_> = outcome.progress.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [StepStatus::Compensated, StepStatus::Failed, StepStatus::Pending]
    );
    assert_eq!(outcome.progress.success, Some(false));
}

#[tokio::test]
async fn compensation_walks_back_in_reverse_order_of_completion() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    let request = OrderRequest {
        ship_fails: true,
        ..order("chair")
    };
    let handle = host.submit::<PlaceOrder>(request).await.unwrap();
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Compensated);
    assert_eq!(
        journal.entries(),
        ["run Reserve", "run Charge", "run Ship", "undo Charge", "undo Reserve"]
    );
    let timeline = host.timeline(handle.id());
    let tail = &timeline[timeline.len() - 6..];
    assert_eq!(
        tail,
        [
            "Compensating StepFailed",
            "StepCompensating Charge #1",
            "StepCompensated Charge",
            "StepCompensating Reserve #1",
            "StepCompensated Reserve",
            "Compensated",
        ]
    );
}

#[tokio::test]
async fn a_compensation_that_keeps_failing_is_never_swallowed() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    host.inject("Reserve", Fault::FailCompensationAlways);
    let request = OrderRequest {
        ship_fails: true,
        ..order("sofa")
    };
    let outcome = host.run::<PlaceOrder>(request).await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::CompensationFailed);
    assert_eq!(outcome.progress.steps[0].status, StepStatus::CompensationFailed);
    assert_eq!(
        outcome.progress.steps[1].status,
        StepStatus::Compensated,
        "the other steps are still undone"
    );
    let error = outcome.progress.error.unwrap();
    assert!(
        error.contains("compensation failed") && error.contains("Reserve"),
        "{error}"
    );
    assert_eq!(outcome.progress.success, Some(false));
}

#[tokio::test(start_paused = true)]
async fn a_failing_compensation_is_retried_with_the_step_policy() {
    let journal = Journal::default();
    let host = TestHost::new(PlaceOrder {
        journal: journal.clone(),
    });
    host.inject("Charge", Fault::FailCompensationTimes(2));
    let request = OrderRequest {
        ship_fails: true,
        ..order("rug")
    };
    let handle = host.submit::<PlaceOrder>(request).await.unwrap();
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Compensated);
    let timeline = host.timeline(handle.id());
    assert!(
        timeline.contains(&"StepCompensating Charge #3".to_owned()),
        "{timeline:?}"
    );
    assert_eq!(journal.count("undo Charge"), 1);
}
