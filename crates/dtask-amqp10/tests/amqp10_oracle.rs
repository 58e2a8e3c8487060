//! An independent client as the oracle of the wire layout: Qpid Proton's
//! Python binding (`python-qpid-proton`, `tests/oracle.py`) reads a message
//! dtask published to RabbitMQ and checks its body and application
//! properties, sends one that dtask then consumes, and sends one that is
//! not dtask's, which dtask dead-letters.

mod support;

use std::process::Command;

use dtask_core::infra::{DeadLetters, QueueConsumer, QueuePublisher};
use dtask_core::{Codec, Format, TaskId};
use futures::StreamExt;
use support::{connect, dead_letters, delete_queues, message, unique, within};

/// Runs `oracle.py verb address spec`, failing with its output unless it
/// succeeds.
async fn oracle(verb: &str, address: &str, spec: serde_json::Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle.py");
    let args = [
        script.to_owned(),
        verb.to_owned(),
        support::url(),
        address.to_owned(),
        spec.to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || Command::new("python3").args(&args).output())
        .await
        .expect("the oracle's task")
        .unwrap_or_else(|e| panic!("cannot run python3 (the oracle needs python-qpid-proton): {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the oracle ({verb}) failed: {said}");
    println!("{said}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proton_reads_what_dtask_publishes_and_dtask_reads_what_proton_sends() {
    let queue = unique("oracle");
    let address = format!("/queue/{queue}");
    let amqp = connect().await;

    // (a) dtask publishes; Proton reads and checks.
    let sent = message(7)
        .with_trace_parent(Some(dtask_core::trace::TraceParent::random()))
        .for_member("Thumbnail");
    amqp.publish(&queue, sent.clone()).await.expect("publish");
    let (format, body) = sent.payload.encoded().expect("encoded");
    let expected = serde_json::json!({
        "body_hex": hex(body),
        "id": sent.id.to_string(),
        "content_type": format.content_type(),
        "properties": {
            "dtask-message-id": sent.id.to_string(),
            "dtask-task-id": sent.task_id.to_string(),
            "dtask-task-name": sent.task_name,
            "dtask-format": format.name(),
            "dtask-schema-version": dtask_core::SCHEMA_VERSION.to_string(),
            "traceparent": sent.trace_parent.as_ref().map(ToString::to_string),
            "dtask-member": "Thumbnail",
        },
    });
    oracle("read", &address, expected).await;

    // (b) Proton sends; dtask consumes.
    let (id, task_id) = (uuid::Uuid::now_v7(), TaskId::new());
    let payload = Codec::new(Format::MessagePack)
        .encode(&serde_json::json!({ "from": "proton" }))
        .expect("encode");
    let (format, body) = payload.encoded().expect("encoded");
    let spec = serde_json::json!({
        "body_hex": hex(body),
        "id": id.to_string(),
        "content_type": format.content_type(),
        "properties": {
            "dtask-message-id": id.to_string(),
            "dtask-task-id": task_id.to_string(),
            "dtask-task-name": "FromProton",
            "dtask-format": format.name(),
            "dtask-schema-version": "1",
        },
    });
    oracle("send", &address, spec).await;
    let mut stream = amqp.consume(&queue).await.expect("consume");
    let delivery = within("Proton's message", stream.next()).await.unwrap().unwrap();
    let got = delivery.message();
    assert_eq!(
        (got.id, got.task_id, got.task_name.as_str()),
        (id, task_id, "FromProton")
    );
    assert_eq!(got.payload.encoded().expect("encoded"), (format, body));
    let value: serde_json::Value = got.payload.decode().expect("decode");
    assert_eq!(value, serde_json::json!({ "from": "proton" }));
    assert_eq!(delivery.delivery_count(), 1);
    delivery.ack().await.expect("ack");

    // (c) Proton sends a message that is not dtask's: it is dead-lettered
    // with the reason, never delivered; the next one is.
    let foreign = serde_json::json!({
        "body_hex": hex(b"hello"),
        "id": "not-a-dtask-message",
        "content_type": "text/plain",
        "properties": { "origin": "proton" },
    });
    oracle("send", &address, foreign).await;
    let sentinel = message(8);
    amqp.publish(&queue, sentinel.clone()).await.expect("publish");
    let delivery = within("the message after the foreign one", stream.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.message().id, sentinel.id, "the foreign message was delivered");
    delivery.ack().await.expect("ack");
    let letters = within("the dead letters", dead_letters(&amqp).dead_letters(&queue, 10))
        .await
        .expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].id, "not-a-dtask-message");
    assert!(letters[0].message.is_none(), "not readable as a dtask message");
    assert!(letters[0].reason.contains("dtask-message-id"), "{}", letters[0].reason);
    drop(stream);

    // The queue and its dead-letter queue are durable.
    let listed = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name", "durable"])
        .output()
        .expect("rabbitmqctl runs (as root)");
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in [queue.clone(), dtask_amqp10::dead_letter_queue(&queue)] {
        let line = listed
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name.as_str()));
        assert_eq!(
            line.and_then(|l| l.split_whitespace().nth(1)),
            Some("true"),
            "{name} is durable: {listed}"
        );
    }
    delete_queues(&[queue]).await;
}
