//! What `AmqpQueue` puts on the broker: persistent messages with their
//! headers, quorum queues declared idempotently, refusals that say why.

mod support;

use std::collections::HashSet;

use dtask_amqp::{
    DEAD_LETTER_EXCHANGE, FORMAT_HEADER, MESSAGE_ID_HEADER, PERSISTENT, TASK_ID_HEADER, TASK_NAME_HEADER,
    dead_letter_queue,
};
use dtask_core::infra::{QueueConsumer, QueueMessage, QueuePublisher};
use dtask_core::{Error, Payload, TaskId};
use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use support::{config, connect, connect_with, consume_raw, get_one, message, raw_channel, unique, within};

fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        other => panic!("header {name} is {other:?}"),
    }
}

#[tokio::test]
async fn messages_are_persistent_and_carry_their_headers() {
    let queue = unique("wire");
    let amqp = connect().await;
    let sent = message(7);
    amqp.publish(&queue, sent.clone()).await.expect("publish");

    let (_connection, channel) = raw_channel().await;
    let got = get_one(&channel, &queue).await.expect("the message is in the queue");
    let properties = &got.delivery.properties;
    assert_eq!(properties.delivery_mode(), &Some(PERSISTENT), "delivery_mode");
    let content_type = properties.content_type().as_ref().map(|t| t.to_string());
    assert_eq!(content_type.as_deref(), Some("application/json"), "content_type");
    let message_id = properties.message_id().as_ref().map(|id| id.to_string());
    assert_eq!(message_id, Some(sent.id.to_string()), "message_id");
    assert_eq!(header(properties, MESSAGE_ID_HEADER), Some(sent.id.to_string()));
    assert_eq!(header(properties, TASK_ID_HEADER), Some(sent.task_id.to_string()));
    assert_eq!(header(properties, TASK_NAME_HEADER).as_deref(), Some("TestTask"));
    assert_eq!(header(properties, FORMAT_HEADER).as_deref(), Some("json"));
    let (_, bytes) = sent.payload.encoded().unwrap();
    assert_eq!(got.delivery.data, bytes.to_vec(), "the body is the payload's bytes");
    amqp.delete(&queue).await.expect("delete");
}

#[tokio::test]
async fn in_memory_payloads_are_refused() {
    let amqp = connect().await;
    let queue = unique("in-memory");
    let message = QueueMessage::new(TaskId::new(), "TestTask", Payload::in_memory(42u32));
    let error = amqp
        .publish(&queue, message)
        .await
        .expect_err("an in-memory payload was published");
    assert!(matches!(error, Error::Unsupported(_)), "{error:?}");
    assert!(error.to_string().contains("in-memory"), "{error}");
}

#[tokio::test]
async fn bad_queue_names_are_refused_before_anything_is_sent() {
    let amqp = connect().await;
    for name in [String::new(), "q".repeat(250)] {
        let error = amqp.publish(&name, message(1)).await.expect_err("published");
        assert!(matches!(error, Error::Invalid { what: "queue", .. }), "{error:?}");
        assert!(amqp.consume(&name).await.is_err(), "consumed {name:?}");
    }
}

#[tokio::test]
async fn declaring_is_idempotent_across_processes_and_queues_are_quorum_queues() {
    let queue = unique("declare");
    let (first, second) = (connect().await, connect().await);
    first.declare(&queue).await.expect("first declaration");
    first
        .declare(&queue)
        .await
        .expect("second declaration, same connection");
    second.declare(&queue).await.expect("declaration by another connection");
    let _stream = second.consume(&queue).await.expect("consume declares too");

    // The queue has exactly these arguments: declaring it with them again
    // succeeds, and with any other queue type fails.
    let (_connection, channel) = raw_channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let arguments = |queue_type: &str| {
        let mut arguments = FieldTable::default();
        let text = |value: &str| AMQPValue::LongString(value.into());
        arguments.insert("x-queue-type".into(), text(queue_type));
        arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(5));
        arguments.insert("x-dead-letter-exchange".into(), text(DEAD_LETTER_EXCHANGE));
        arguments.insert("x-dead-letter-routing-key".into(), text(&dead_letter_queue(&queue)));
        arguments
    };
    channel
        .queue_declare(queue.as_str().into(), durable, arguments("quorum"))
        .await
        .expect("declaring with the documented arguments");
    let refused = channel
        .queue_declare(queue.as_str().into(), durable, arguments("classic"))
        .await
        .expect_err("a classic queue of the same name was declared");
    assert!(refused.to_string().contains("x-queue-type"), "{refused}");
    drop(_stream);
    first.delete(&queue).await.expect("delete");
}

#[tokio::test]
async fn another_delivery_limit_is_refused_with_a_clear_error() {
    let queue = unique("inequivalent");
    let five = connect().await;
    five.declare(&queue).await.expect("declare");
    let three = connect_with(config().with_max_deliveries(3)).await;
    let error = three.declare(&queue).await.expect_err("declared with another limit");
    let text = error.to_string();
    assert!(text.contains(&queue) && text.contains("x-delivery-limit"), "{text}");
    let error = three.publish(&queue, message(1)).await.expect_err("published");
    assert!(error.to_string().contains("cannot declare"), "{error}");
    // The refusal closed a channel of its own: the connection still works.
    five.publish(&queue, message(2)).await.expect("publish after a refusal");
    three.ping().await.expect("ping after a refusal");
    five.delete(&queue).await.expect("delete");
}

#[tokio::test]
async fn a_foreign_message_is_dead_lettered_and_the_stream_goes_on() {
    let queue = unique("foreign");
    let amqp = connect().await;
    let mut stream = amqp.consume(&queue).await.expect("consume");
    let (_connection, channel) = raw_channel().await;
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"not a dtask message",
            BasicProperties::default(),
        )
        .await
        .expect("raw publish");
    let sent = message(1);
    amqp.publish(&queue, sent.clone()).await.expect("publish");
    let delivery = within("the dtask message", stream.next()).await.unwrap().unwrap();
    assert_eq!(delivery.message().id, sent.id);
    delivery.ack().await.expect("ack");

    let mut dead_letters = consume_raw(&channel, &dead_letter_queue(&queue)).await;
    let dead = within("the foreign message", dead_letters.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.data, b"not a dtask message");
    drop(stream);
    amqp.delete(&queue).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_share_the_connection_safely() {
    const N: usize = 500;
    let queue = unique("concurrent");
    let amqp = connect().await;
    let sent: Vec<QueueMessage> = (0..N).map(message).collect();
    let publishes = sent.iter().cloned().map(|m| {
        let (amqp, queue) = (amqp.clone(), queue.clone());
        tokio::spawn(async move { amqp.publish(&queue, m).await })
    });
    for publish in futures::future::join_all(publishes).await {
        publish.expect("publish task").expect("publish");
    }
    let mut stream = amqp.consume(&queue).await.expect("consume");
    let mut seen = HashSet::new();
    while seen.len() < N {
        let delivery = within("a delivery", stream.next()).await.unwrap().unwrap();
        assert!(seen.insert(delivery.message().id), "delivered twice");
        assert_eq!(delivery.delivery_count(), 1);
        delivery.ack().await.expect("ack");
    }
    assert!(sent.iter().all(|m| seen.contains(&m.id)));
    drop(stream);
    assert_eq!(amqp.delete(&queue).await.expect("delete"), 0, "messages left behind");
}

#[tokio::test]
async fn ping_answers_for_both_roles() {
    let amqp = connect().await;
    QueuePublisher::ping(&amqp).await.expect("publisher ping");
    QueueConsumer::ping(&amqp).await.expect("consumer ping");
}
