//! A queue's stream is bounded, never trimmed: publishes past
//! `max_backlog` wait for room, and every message published is delivered.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use dtask_core::infra::{QueueConsumer, QueuePublisher};
use support::{message, next, number};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_bound_waits_and_every_message_is_later_consumed() {
    const BOUND: u64 = 5;
    const BURST: u64 = 20;
    let (config, _keys) = support::config();
    let queue = support::connect(config.with_max_backlog(BOUND as usize)).await;
    for n in 0..BOUND {
        queue.publish("jobs", message(n)).await.unwrap();
    }
    let waiting: Vec<_> = (BOUND..BURST)
        .map(|n| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.publish("jobs", message(n)).await })
        })
        .collect();
    // Proving that the publishes wait takes a bounded wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        waiting.iter().all(|p| !p.is_finished()),
        "a publish to a full queue returned"
    );
    assert_eq!(
        queue.len("jobs").await.unwrap(),
        BOUND,
        "the stream holds the bound, nothing trimmed"
    );

    let mut stream = queue.consume("jobs").await.unwrap();
    let mut seen = HashSet::new();
    while seen.len() < BURST as usize {
        let delivery = next(&mut stream, "the burst").await;
        assert!(seen.insert(number(&delivery)), "a message was delivered twice");
        delivery.ack().await.unwrap();
    }
    for publish in waiting {
        publish.await.unwrap().expect("every waiting publish went through");
    }
    assert_eq!(seen, (0..BURST).collect::<HashSet<_>>(), "every message was consumed");
    assert_eq!(queue.len("jobs").await.unwrap(), 0);
    assert!(queue.stats().publishes_waited >= BURST - BOUND);
}

#[tokio::test]
async fn a_publish_to_a_queue_that_stays_full_fails_with_nothing_published() {
    let (config, _keys) = support::config();
    let queue = support::connect(
        config
            .with_max_backlog(2)
            .with_full_queue_wait(Duration::from_millis(200)),
    )
    .await;
    queue.publish("jobs", message(1)).await.unwrap();
    queue.publish("jobs", message(2)).await.unwrap();
    let error = queue.publish("jobs", message(3)).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("queue `jobs` is full"), "{text}");
    assert!(text.contains("nothing was published"), "{text}");
    assert_eq!(queue.len("jobs").await.unwrap(), 2);

    let mut stream = queue.consume("jobs").await.unwrap();
    for n in [1, 2] {
        let delivery = next(&mut stream, "the two published").await;
        assert_eq!(number(&delivery), n);
        delivery.ack().await.unwrap();
    }
}
