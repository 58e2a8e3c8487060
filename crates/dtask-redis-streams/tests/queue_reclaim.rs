//! Messages of consumers that died come back to live ones after the
//! visibility timeout; messages of live consumers do not.

mod support;

use std::time::Duration;

use dtask_core::infra::{QueueConsumer, QueuePublisher};
use support::{message, next, nothing_for, number, pending};

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_crashed_consumers_delivery_is_reclaimed_with_count_two() {
    let (config, _keys) = support::config();
    let crashed = support::connect(config.clone().with_consumer("crashed")).await;
    crashed.publish("jobs", message(1)).await.unwrap();
    let mut stream = crashed.consume("jobs").await.unwrap();
    let delivery = next(&mut stream, "first delivery").await;
    assert_eq!(delivery.delivery_count(), 1);
    // A crash: the acker never runs, the process's streams are gone.
    std::mem::forget(delivery);
    drop(stream);
    drop(crashed);

    let survivor = support::connect(config.with_consumer("survivor").with_visibility_timeout(SHORT)).await;
    let mut stream = survivor.consume("jobs").await.unwrap();
    let again = next(&mut stream, "reclaimed delivery").await;
    assert_eq!((number(&again), again.delivery_count()), (1, 2));
    again.ack().await.unwrap();
    let key = survivor.config().stream_key("jobs");
    assert_eq!(
        pending(&mut support::raw().await, &key, &survivor.config().group).await,
        0
    );
    assert_eq!(survivor.len("jobs").await.unwrap(), 0, "acked entries are deleted");
}

#[tokio::test]
async fn a_message_read_by_a_raw_dead_consumer_is_reclaimed() {
    let (config, _keys) = support::config();
    let queue = support::connect(config.with_visibility_timeout(SHORT)).await;
    let sent = message(7);
    queue.publish("jobs", sent.clone()).await.unwrap();
    let key = queue.config().stream_key("jobs");
    let mut raw = support::raw().await;
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&queue.config().group)
        .arg("dead")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&key)
        .arg(">")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_ne!(read, redis::Value::Nil, "the dead consumer read nothing");

    let mut stream = queue.consume("jobs").await.unwrap();
    let again = next(&mut stream, "reclaimed delivery").await;
    assert_eq!(again.message().id, sent.id);
    assert_eq!(again.delivery_count(), 2);
    again.ack().await.unwrap();
    assert_eq!(pending(&mut raw, &key, &queue.config().group).await, 0);
}

#[tokio::test]
async fn a_live_consumer_keeps_its_delivery_past_the_visibility_timeout() {
    let (config, _keys) = support::config();
    let worker = support::connect(config.clone().with_consumer("busy").with_visibility_timeout(SHORT)).await;
    let other = support::connect(config.with_consumer("idle").with_visibility_timeout(SHORT)).await;
    worker.publish("jobs", message(1)).await.unwrap();
    let mut busy = worker.consume("jobs").await.unwrap();
    let delivery = next(&mut busy, "busy worker").await;

    // Time passing is the property under test: four visibility timeouts.
    let mut idle = other.consume("jobs").await.unwrap();
    nothing_for(
        &mut idle,
        SHORT * 4,
        "a held delivery was reclaimed from a live consumer",
    )
    .await;
    assert_eq!(delivery.delivery_count(), 1);
    delivery.ack().await.unwrap();
    nothing_for(&mut idle, SHORT * 2, "an acked delivery came back").await;
}

#[tokio::test]
async fn dropping_a_stream_hands_back_what_it_fetched_without_counting() {
    let (config, _keys) = support::config();
    let queue = support::connect(config).await;
    for n in 1..=3 {
        queue.publish("jobs", message(n)).await.unwrap();
    }
    let mut first = queue.consume("jobs").await.unwrap();
    let delivery = next(&mut first, "first").await;
    assert_eq!(number(&delivery), 1);
    drop(first); // it had fetched 2 and 3 too
    delivery.ack().await.unwrap();

    let mut second = queue.consume("jobs").await.unwrap();
    for expected in [2, 3] {
        let delivery = next(&mut second, "handed back").await;
        assert_eq!((number(&delivery), delivery.delivery_count()), (expected, 1));
        delivery.ack().await.unwrap();
    }
}

#[tokio::test]
async fn the_stream_survives_its_connection_being_killed() {
    let (config, _keys) = support::config();
    let consumer = format!("killed-{}", uuid::Uuid::new_v4().simple());
    let queue = support::connect(config.with_consumer(consumer.clone())).await;
    let mut stream = queue.consume("jobs").await.unwrap();
    queue.publish("jobs", message(1)).await.unwrap();
    next(&mut stream, "before the kill").await.ack().await.unwrap();

    let mut raw = support::raw().await;
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut raw).await.unwrap();
    let name = format!("name=dtask-streams-reader:{consumer} ");
    let ids: Vec<&str> = clients
        .lines()
        .filter(|line| line.contains(&name))
        .filter_map(|line| line.strip_prefix("id=")?.split(' ').next())
        .collect();
    assert_eq!(ids.len(), 1, "the reader connection is named: {clients}");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(ids[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(killed, 1);

    queue.publish("jobs", message(2)).await.unwrap();
    let after = next(&mut stream, "after the kill").await;
    assert_eq!((number(&after), after.delivery_count()), (2, 1));
    after.ack().await.unwrap();
}

#[tokio::test]
async fn an_ack_of_an_entry_another_consumer_reclaimed_is_refused_and_leaves_it_to_that_consumer() {
    let (config, _keys) = support::config();
    let slow = support::connect(config.clone().with_consumer("slow").with_visibility_timeout(SHORT)).await;
    let other = support::connect(config.with_consumer("other").with_visibility_timeout(SHORT)).await;
    slow.publish("jobs", message(1)).await.unwrap();
    let mut stream = slow.consume("jobs").await.unwrap();
    let stale = next(&mut stream, "first delivery").await;
    // The stream goes (its entries are no longer renewed) while the
    // delivery lives on, as in a worker that stalled past its lease.
    drop(stream);

    let mut stream = other.consume("jobs").await.unwrap();
    let reclaimed = next(&mut stream, "reclaimed delivery").await;
    assert_eq!((number(&reclaimed), reclaimed.delivery_count()), (1, 2));

    let refused = stale.ack().await.unwrap_err();
    assert!(matches!(refused, dtask_core::Error::NotOwned { .. }), "{refused:?}");
    assert_eq!(slow.stats().acks_refused, 1);
    let key = other.config().stream_key("jobs");
    let mut raw = support::raw().await;
    assert_eq!(
        pending(&mut raw, &key, &other.config().group).await,
        1,
        "still the other's"
    );
    assert_eq!(other.len("jobs").await.unwrap(), 1, "the entry was not deleted");

    reclaimed.ack().await.unwrap();
    assert_eq!(pending(&mut raw, &key, &other.config().group).await, 0);
    assert_eq!(other.len("jobs").await.unwrap(), 0);
}
