//! An API host and a worker host apart, sharing only their infrastructure
//! (here the in-memory backends, standing in for RabbitMQ, Redis and S3):
//! what Distributed mode does across processes.

mod support;

use dtask::prelude::*;
use dtask::{CancelOutcome, Host, Mode, StepStatus};
use futures::StreamExt;
use support::{Journal, OrderRequest, PlaceOrder, shared_infrastructure};

fn api_and_worker(journal: &Journal) -> (Host, Host) {
    let infra = shared_infrastructure();
    let api = Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infra.clone())
        .register(PlaceOrder::default())
        .run_workers(false)
        .build()
        .unwrap();
    let worker = Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infra)
        .register(PlaceOrder {
            journal: journal.clone(),
        })
        .build()
        .unwrap();
    (api, worker)
}

#[tokio::test]
async fn a_task_submitted_to_the_api_host_runs_on_the_worker_host() {
    let journal = Journal::default();
    let (api, _worker) = api_and_worker(&journal);
    let handle = api
        .submit::<PlaceOrder>(OrderRequest {
            item: "lamp".into(),
            ..OrderRequest::default()
        })
        .await
        .unwrap();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);
    assert_eq!(outcome.response.unwrap().tracking, "res-lamp/pay-for-res-lamp");
    assert_eq!(journal.entries(), ["run Reserve", "run Charge", "run Ship"]);
}

#[tokio::test]
async fn a_cancel_sent_to_the_api_host_stops_the_step_running_on_the_worker_host() {
    let journal = Journal::default();
    let (api, worker) = api_and_worker(&journal);
    // Charge keeps failing, so the task sits in its retry backoff on the worker host.
    let handle = api
        .submit::<PlaceOrder>(OrderRequest {
            item: "harp".into(),
            charge_failures: 1000,
            ..OrderRequest::default()
        })
        .await
        .unwrap();
    let mut stream = handle.stream().await.unwrap();
    while let Some(progress) = stream.next().await {
        if progress.steps[1].status == StepStatus::Retrying {
            break;
        }
    }
    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::Requested);
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Cancelled);
    assert_eq!(journal.entries().last().map(String::as_str), Some("undo Reserve"));
    worker.shutdown().await;
}
