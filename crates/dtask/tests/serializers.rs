//! The serializers through a whole host: every format carries a saga from
//! submit to completion, a task's declared format is the default, the
//! builder overrides it, and messages a worker cannot read are
//! dead-lettered with the reason while the worker goes on.

mod support;

use dtask::infra::{DeadLetters, QueueConsumer, QueueMessage, QueuePublisher};
use dtask::memory::MemoryQueue;
use dtask::prelude::*;
use dtask::{Codec, Format, Host, Payload, SCHEMA_VERSION, TaskId, TaskStatus};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use support::{OrderRequest, OrderResponse, PlaceOrder};

fn order(item: &str) -> OrderRequest {
    OrderRequest {
        item: item.to_owned(),
        ..OrderRequest::default()
    }
}

#[tokio::test]
async fn every_format_carries_a_saga_from_submit_to_completion() {
    for format in Format::ALL {
        let host = Host::builder()
            .register(PlaceOrder::default())
            .serializer(format)
            .serialize_in_process(true)
            .build()
            .unwrap();
        let outcome = host
            .submit::<PlaceOrder>(order("lamp"))
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(outcome.status(), TaskStatus::Completed, "{format}");
        assert_eq!(
            outcome.response,
            Some(OrderResponse {
                reservation: "res-lamp".into(),
                payment: "pay-for-res-lamp".into(),
                tracking: "res-lamp/pay-for-res-lamp".into(),
            }),
            "{format}"
        );
        host.shutdown().await;
    }
}

/// The format of the message a [`Survey`] submission hands to its queue.
async fn handed_off_format(builder: dtask::HostBuilder, queue: &MemoryQueue) -> Format {
    let host = builder.run_workers(false).build().unwrap();
    let mut deliveries = queue.consume("surveys").await.unwrap();
    let handle = host
        .submit::<Survey>(SurveyRequest { answers: vec![3, 4] })
        .await
        .unwrap();
    let delivery = deliveries.next().await.unwrap().unwrap();
    assert_eq!(delivery.message().task_id, handle.id());
    let (format, _) = delivery.message().payload.encoded().unwrap();
    delivery.ack().await.unwrap();
    host.shutdown().await;
    format
}

#[tokio::test]
async fn a_task_declares_its_format_and_the_builder_overrides_it() {
    let queue = MemoryQueue::new();
    let declared = Host::builder()
        .register(Survey)
        .queue(queue.clone())
        .serialize_in_process(true);
    assert_eq!(handed_off_format(declared, &queue).await, Format::MessagePack);
    let overridden = Host::builder()
        .register(Survey)
        .queue(queue.clone())
        .serialize_in_process(true)
        .serializer(Format::Protobuf);
    assert_eq!(handed_off_format(overridden, &queue).await, Format::Protobuf);
}

#[tokio::test]
async fn unreadable_messages_are_dead_lettered_and_the_worker_goes_on() {
    let queue = MemoryQueue::new();
    let host = Host::builder()
        .register(PlaceOrder::default())
        .queue(queue.clone())
        .serialize_in_process(true)
        .worker_concurrency(1)
        .build()
        .unwrap();
    let garbage = Payload::Encoded {
        format: Format::Protobuf,
        bytes: bytes::Bytes::from_static(b"\xff\xff not protobuf"),
    };
    let newer = Payload::Encoded {
        format: Format::Json,
        bytes: serde_json::to_vec(&serde_json::json!({ "schemaVersion": SCHEMA_VERSION + 1 }))
            .unwrap()
            .into(),
    };
    let valid_json = Codec::new(Format::Json).encode(&1).unwrap();
    let poison = [
        QueueMessage::new(TaskId::new(), "PlaceOrder", garbage),
        QueueMessage::new(TaskId::new(), "PlaceOrder", newer),
        QueueMessage::new(TaskId::new(), "NoSuchTask", valid_json),
    ];
    for message in &poison {
        queue.publish("orders", message.clone()).await.unwrap();
    }
    // One worker slot takes the queue in order and settles a message before
    // it takes the next: once a task submitted after them completes, the
    // worker has settled all three.
    let outcome = host
        .submit::<PlaceOrder>(order("chair"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);

    let dead = queue.dead_letters("orders", 10).await.unwrap();
    let reasons: Vec<(TaskId, &str)> = dead
        .iter()
        .map(|d| (d.message.as_ref().unwrap().task_id, d.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[0].0, poison[0].task_id);
    assert!(
        reasons[0].1.contains("cannot read the saga state of `PlaceOrder`") && reasons[0].1.contains("protobuf"),
        "{}",
        reasons[0].1
    );
    assert_eq!(reasons[1].0, poison[1].task_id);
    assert!(
        reasons[1].1.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
        "{}",
        reasons[1].1
    );
    assert_eq!(reasons[2].0, poison[2].task_id);
    assert!(reasons[2].1.contains("no task named `NoSuchTask`"), "{}", reasons[2].1);
    host.shutdown().await;
}

// ------------------------------------------------------------ a MessagePack task

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SurveyRequest {
    answers: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Score {
    total: u32,
}

#[dtask::task(
    name = "Survey",
    request = SurveyRequest,
    response = Score,
    queue = "surveys",
    mode = InProcess,
    serialization = MessagePack
)]
#[custom_step(Tally, order = 1, output = Score)]
#[derive(Debug, Clone, Default)]
struct Survey;

impl survey::Steps for Survey {
    async fn tally(&self, _cx: &StepContext, input: survey::TallyInput<'_>) -> Result<Score, StepError> {
        Ok(Score {
            total: input.request.answers.iter().map(|&a| u32::from(a)).sum(),
        })
    }

    fn response(&self, outputs: survey::Outputs<'_>) -> Result<Score, StepError> {
        Ok(outputs.tally.clone())
    }
}
