//! Messages delivered too often, and entries that cannot be read, move to
//! the queue's dead-letter stream instead of coming back.

mod support;

use std::time::Duration;

use dtask_core::infra::{DeadLetters, QueueConsumer, QueuePublisher};
use dtask_redis_streams::fields;
use support::{message, next, number};

#[tokio::test]
async fn a_message_nacked_on_its_last_delivery_is_dead_lettered() {
    let (config, _keys) = support::config();
    let queue = support::connect(config.with_max_deliveries(2)).await;
    let doomed = message(1);
    queue.publish("jobs", doomed.clone()).await.unwrap();
    let mut stream = queue.consume("jobs").await.unwrap();

    let first = next(&mut stream, "first delivery").await;
    assert_eq!(first.delivery_count(), 1);
    first.nack().await.unwrap();
    let second = next(&mut stream, "second delivery").await;
    assert_eq!((second.message().id, second.delivery_count()), (doomed.id, 2));
    second.nack().await.unwrap();

    queue.publish("jobs", message(2)).await.unwrap();
    let sentinel = next(&mut stream, "sentinel").await;
    assert_eq!(number(&sentinel), 2, "the dead-lettered message came back");
    sentinel.ack().await.unwrap();

    let dead = queue.dead_letters("jobs", 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].deliveries, 2);
    assert!(dead[0].reason.contains("nacked on delivery 2"), "{}", dead[0].reason);
    assert!(!dead[0].id.is_empty(), "a dead letter is named by its entry id");
    let message = dead[0].message.as_ref().expect("the dead letter decodes");
    assert_eq!((message.id, message.task_id), (doomed.id, doomed.task_id));
    assert_eq!(queue.len("jobs").await.unwrap(), 0, "the main stream is empty");
    assert_eq!(queue.dead_letter_len("jobs").await.unwrap(), 1);
}

#[tokio::test]
async fn a_message_left_unsettled_too_often_is_dead_lettered_on_reclaim() {
    let (config, _keys) = support::config();
    let queue = support::connect(
        config
            .with_max_deliveries(1)
            .with_visibility_timeout(Duration::from_millis(300)),
    )
    .await;
    let doomed = message(1);
    queue.publish("jobs", doomed.clone()).await.unwrap();
    let key = queue.config().stream_key("jobs");
    let mut raw = support::raw().await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&queue.config().group)
        .arg("dead")
        .arg("STREAMS")
        .arg(&key)
        .arg(">")
        .query_async(&mut raw)
        .await
        .unwrap();

    let mut stream = queue.consume("jobs").await.unwrap();
    let first = tokio::spawn(async move { (next(&mut stream, "sentinel").await, stream) });
    // Past the visibility timeout, the consumer's reclaim finds it
    // delivered once already: the most allowed.
    tokio::time::timeout(support::PATIENCE, async {
        while queue.dead_letter_len("jobs").await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the message was not dead-lettered");
    queue.publish("jobs", message(2)).await.unwrap();
    let (sentinel, _stream) = first.await.unwrap();
    assert_eq!(number(&sentinel), 2, "the dead-lettered message was delivered");
    sentinel.ack().await.unwrap();

    let dead = queue.dead_letters("jobs", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].deliveries, 1);
    assert!(dead[0].reason.contains("visibility timeout"), "{}", dead[0].reason);
    assert_eq!(dead[0].message.as_ref().map(|m| m.id), Some(doomed.id));
    assert_eq!(support::pending(&mut raw, &key, &queue.config().group).await, 0);
}

#[tokio::test]
async fn malformed_entries_are_dead_lettered_and_never_yielded() {
    let (config, _keys) = support::config();
    let queue = support::connect(config).await;
    // Creates the stream and its group.
    let mut stream = queue.consume("jobs").await.unwrap();
    let key = queue.config().stream_key("jobs");
    let mut raw = support::raw().await;
    let add = |fields: Vec<(&'static str, Vec<u8>)>| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&key).arg("*");
        for (field, value) in fields {
            cmd.arg(field).arg(value);
        }
        cmd
    };
    let garbage = add(vec![("junk", b"\xff\x00".to_vec())]);
    let good = message(9);
    let bad_format = add(vec![
        (fields::MESSAGE_ID, good.id.to_string().into_bytes()),
        (fields::TASK_ID, good.task_id.to_string().into_bytes()),
        (fields::TASK_NAME, b"TestTask".to_vec()),
        (fields::FORMAT, b"yaml".to_vec()),
        (fields::PAYLOAD, b"n: 1".to_vec()),
    ]);
    for cmd in [garbage, bad_format] {
        cmd.query_async::<()>(&mut raw).await.unwrap();
    }
    queue.publish("jobs", good.clone()).await.unwrap();

    let delivery = next(&mut stream, "the good message").await;
    assert_eq!(delivery.message().id, good.id);
    delivery.ack().await.unwrap();

    let dead = queue.dead_letters("jobs", 10).await.unwrap();
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "malformed entry: missing field `message_id`",
            "malformed entry: field `format`: unknown serialization format `yaml`: expected json, msgpack or protobuf"
        ]
    );
    assert!(dead.iter().all(|d| d.message.is_none() && d.deliveries == 1));
    assert_eq!(queue.len("jobs").await.unwrap(), 0);
    assert_eq!(support::pending(&mut raw, &key, &queue.config().group).await, 0);
}
