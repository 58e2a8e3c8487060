//! A worker meets a message written for another shape of its task (a
//! deploy while messages were in flight): the message is dead-lettered
//! with a reason that names both shapes, and the worker goes on serving.

mod support;

use std::time::Duration;

use dtask::infra::Infrastructure;
use dtask::prelude::*;
use support::{OrderRequest, PlaceOrder, PlaceOrderV2, shared_infrastructure};

fn host<T: Task>(infra: &Infrastructure, task: T, workers: bool) -> Host {
    Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infra.clone())
        .register(task)
        .run_workers(workers)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_message_of_another_task_shape_is_dead_lettered_and_the_worker_goes_on() {
    let infra = shared_infrastructure();
    let new_api = host(&infra, PlaceOrderV2, false);
    let old_api = host(&infra, PlaceOrder::default(), false);
    let old_worker = host(&infra, PlaceOrder::default(), true);

    let foreign = new_api
        .submit::<PlaceOrderV2>(OrderRequest::default())
        .await
        .unwrap()
        .id();
    // Dead-lettering raises no task event (the task is not the worker's to
    // record): look until it is listed.
    let listed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let listed = old_worker.dead_letters(10).await.unwrap();
            if !listed.is_empty() {
                return listed;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the foreign message is dead-lettered");
    assert_eq!(listed.len(), 1);
    let letter = &listed[0].letter;
    assert_eq!(letter.message.as_ref().unwrap().task_id, foreign);
    assert!(
        letter.reason.contains("`PlaceOrder[Reserve, Pack, Ship]`")
            && letter.reason.contains("`PlaceOrder[Reserve, Charge, Ship]`"),
        "the reason names both shapes: {}",
        letter.reason
    );
    let progress = old_api.progress(foreign).await.unwrap().unwrap();
    assert_eq!(
        progress.status,
        TaskStatus::Queued,
        "the foreign task was left as it was"
    );

    let handle = old_api
        .submit::<PlaceOrder>(OrderRequest {
            item: "kettle".into(),
            ..OrderRequest::default()
        })
        .await
        .unwrap();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed, "the worker goes on serving");
}
