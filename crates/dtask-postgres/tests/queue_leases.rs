//! The PostgreSQL queue's leases: a delivery held past its visibility
//! timeout is renewed and stays with its consumer; the message of a
//! consumer that died (no settlement, no renewal) comes back to another
//! once the timeout runs out, counted as a second delivery.

mod support;

use std::time::Duration;

use dtask_core::conformance::unique_name;
use dtask_core::infra::{QueueConsumer, QueueMessage, QueuePublisher};
use dtask_core::{Codec, Format, TaskId};
use dtask_postgres::PostgresQueue;
use futures::StreamExt;

const VISIBILITY: Duration = Duration::from_millis(600);

async fn queue() -> PostgresQueue {
    support::connect(&support::config().with_visibility_timeout(VISIBILITY))
        .await
        .queue()
}

fn message() -> QueueMessage {
    let payload = Codec::new(Format::Json).encode(&serde_json::json!({"n": 1})).unwrap();
    QueueMessage::new(TaskId::new(), "Leases", payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_delivery_is_renewed_past_its_visibility_timeout() {
    let (queue, name) = (queue().await, unique_name("leases"));
    let mut holder = queue.consume(&name).await.unwrap();
    let mut rival = queue.consume(&name).await.unwrap();
    queue.publish(&name, message()).await.unwrap();
    let held = holder.next().await.unwrap().unwrap();
    // Four visibility timeouts pass: the rival must get nothing.
    let stolen = tokio::time::timeout(4 * VISIBILITY, rival.next()).await;
    assert!(stolen.is_err(), "a renewed delivery was handed to another consumer");
    held.ack().await.expect("the holder still owns it");
    assert_eq!(queue.len(&name).await.unwrap(), 0);
    queue.delete_queue(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumer_s_message_comes_back_after_the_timeout() {
    let (queue, name) = (queue().await, unique_name("leases"));
    queue.publish(&name, message()).await.unwrap();
    // A consumer in a runtime of its own takes the message, then its
    // runtime goes away with it: nothing settles or renews it any more.
    // (It connects a pool of its own: a pool's connections belong to the
    // runtime that opened them, and this one dies.)
    let dead = {
        let name = name.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let delivery = runtime.block_on(async {
                let queue = crate::queue().await;
                let mut stream = queue.consume(&name).await.unwrap();
                stream.next().await.unwrap().unwrap()
            });
            let id = delivery.message().id;
            std::mem::forget(delivery);
            runtime.shutdown_background();
            id
        })
        .join()
        .unwrap()
    };
    let mut survivor = queue.consume(&name).await.unwrap();
    let back = tokio::time::timeout(10 * VISIBILITY, survivor.next())
        .await
        .expect("the message came back")
        .unwrap()
        .unwrap();
    assert_eq!(back.message().id, dead);
    assert_eq!(back.delivery_count(), 2);
    back.ack().await.unwrap();
    queue.delete_queue(&name).await.unwrap();
}
