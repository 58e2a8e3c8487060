//! Dead-lettered tasks: listed by the host, replayed from their last
//! snapshot by `Host::retry`, and finished by a worker.

mod support;

use dtask::infra::QueueConsumer;
use dtask::memory::MemoryQueue;
use dtask::{Host, RetryOutcome, TaskId, TaskStatus};
use futures::StreamExt;
use support::{OrderRequest, PlaceOrder};

fn order(item: &str) -> OrderRequest {
    OrderRequest {
        item: item.to_owned(),
        ..OrderRequest::default()
    }
}

#[tokio::test]
async fn a_dead_lettered_task_is_listed_replayed_and_completed() {
    let queue = MemoryQueue::new();
    let api = Host::builder()
        .register(PlaceOrder::default())
        .queue(queue.clone())
        .serialize_in_process(true)
        .run_workers(false)
        .build()
        .unwrap();
    let handle = api.submit::<PlaceOrder>(order("desk")).await.unwrap();
    let waiting = api.submit::<PlaceOrder>(order("stool")).await.unwrap();

    // A worker that gives up on the first message: it lands in the dead letters.
    let mut deliveries = queue.consume("orders").await.unwrap();
    let delivery = deliveries.next().await.unwrap().unwrap();
    assert_eq!(delivery.message().task_id, handle.id());
    delivery.dead_letter("the payment provider rejected it").await.unwrap();
    drop(deliveries);

    let listed = api.dead_letters(10).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].queue, "orders");
    assert_eq!(listed[0].letter.reason, "the payment provider rejected it");
    assert_eq!(listed[0].letter.message.as_ref().unwrap().task_id, handle.id());
    let progress = listed[0].progress.as_ref().expect("the task's progress");
    assert_eq!(progress.status, TaskStatus::Queued);

    assert_eq!(api.retry(waiting.id()).await.unwrap(), RetryOutcome::NotDeadLettered);
    assert_eq!(api.retry(handle.id()).await.unwrap(), RetryOutcome::Requeued);
    assert!(
        api.dead_letters(10).await.unwrap().is_empty(),
        "the dead letter is gone"
    );
    assert_eq!(api.retry(handle.id()).await.unwrap(), RetryOutcome::NotDeadLettered);

    // Workers on the same infrastructure finish both tasks.
    let workers = Host::builder()
        .register(PlaceOrder::default())
        .infrastructure(api.infrastructure().clone())
        .serialize_in_process(true)
        .build()
        .unwrap();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);
    assert_eq!(outcome.response.unwrap().tracking, "res-desk/pay-for-res-desk");
    assert_eq!(waiting.wait().await.unwrap().status(), TaskStatus::Completed);
    assert_eq!(
        api.retry(handle.id()).await.unwrap(),
        RetryOutcome::AlreadyEnded(TaskStatus::Completed)
    );
    let unknown = api.retry(TaskId::new()).await.unwrap_err();
    assert!(unknown.is_not_found(), "{unknown}");
    workers.shutdown().await;
    api.shutdown().await;
}
