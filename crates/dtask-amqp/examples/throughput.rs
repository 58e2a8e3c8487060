//! Throughput of [`AmqpQueue`] against raw lapin on the same broker, in the
//! same run: publish (with publisher confirms), then consume and ack,
//! `N` small persistent messages through a quorum queue.
//!
//! ```text
//! cargo run --release -p dtask-amqp --example throughput [-- N [PREFETCH [IN_FLIGHT]]]
//! ```
//!
//! - raw lapin: on the same quorum queue topology as `AmqpQueue`, and on a
//!   plain durable classic queue for reference; one confirm-mode channel, confirms awaited every 100
//!   messages (`wait_for_confirms`); a consumer on another channel with the
//!   same prefetch, acking each delivery.
//! - `AmqpQueue`: `publish` awaits each message's own confirmation, so
//!   throughput comes from `IN_FLIGHT` concurrent publishes (default 256);
//!   `consume` with the same prefetch, acking each delivery.
//! - both: also a run where the consumer acks while the publisher publishes
//!   (end to end, as a one-step task would see it).
//!
//! Prints the figures; asserts nothing. Needs RabbitMQ at
//! `DTASK_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).

use std::time::{Duration, Instant};

use dtask_amqp::{AmqpConfig, AmqpQueue, DEFAULT_URL, dead_letter_queue};
use dtask_core::infra::{QueueConsumer, QueueMessage, QueuePublisher};
use dtask_core::{Codec, Format, TaskId};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

/// How many publishes raw lapin sends between two waits for confirms.
const CONFIRM_BATCH: usize = 100;

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy)]
struct Settings {
    messages: usize,
    prefetch: u16,
    in_flight: usize,
}

/// How long each phase took.
#[derive(Debug, Clone, Copy)]
struct Timing {
    publish: Duration,
    consume: Duration,
    together: Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut next = |default: usize| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let settings = Settings {
        messages: next(20_000),
        prefetch: u16::try_from(next(16)).unwrap_or(u16::MAX),
        in_flight: next(256),
    };
    let url = std::env::var("DTASK_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    println!(
        "{} messages, prefetch {}, {} publishes in flight (AmqpQueue), confirms every {CONFIRM_BATCH} (raw lapin)",
        settings.messages, settings.prefetch, settings.in_flight
    );
    let amqp = AmqpQueue::connect(AmqpConfig::new(&url).with_prefetch(settings.prefetch)).await?;
    let raw = Connection::connect(&url, ConnectionProperties::default()).await?;

    let classic_timing = raw_lapin(&raw, &amqp, settings, Topology::Classic).await?;
    report("raw lapin, classic queue", settings.messages, classic_timing);
    let raw_timing = raw_lapin(&raw, &amqp, settings, Topology::Quorum).await?;
    report("raw lapin", settings.messages, raw_timing);
    let queue_timing = amqp_queue(&amqp, settings).await?;
    report("AmqpQueue", settings.messages, queue_timing);
    let ratio = |ours: Duration, theirs: Duration| 100.0 * theirs.as_secs_f64() / ours.as_secs_f64();
    println!(
        "AmqpQueue / raw: publish {:.0} %, consume+ack {:.0} %, end to end {:.0} %",
        ratio(queue_timing.publish, raw_timing.publish),
        ratio(queue_timing.consume, raw_timing.consume),
        ratio(queue_timing.together, raw_timing.together),
    );
    Ok(())
}

fn report(what: &str, messages: usize, timing: Timing) {
    let rate = |d: Duration| messages as f64 / d.as_secs_f64();
    println!(
        "{what:>24}: publish {:>7.0} msg/s ({:>6.2?}), consume+ack {:>7.0} msg/s ({:>6.2?}), end to end {:>7.0} msg/s ({:>6.2?})",
        rate(timing.publish),
        timing.publish,
        rate(timing.consume),
        timing.consume,
        rate(timing.together),
        timing.together,
    );
}

fn queue_name(what: &str) -> String {
    format!("dtask-throughput-{what}-{}", uuid::Uuid::new_v4().simple())
}

fn message(n: usize) -> Result<QueueMessage> {
    let payload = Codec::new(Format::Json).encode(&serde_json::json!({ "n": n }))?;
    Ok(QueueMessage::new(TaskId::new(), "Throughput", payload))
}

/// Publishes then consumes through `AmqpQueue`, then both at once.
async fn amqp_queue(amqp: &AmqpQueue, settings: Settings) -> Result<Timing> {
    let queue = queue_name("amqp-queue");
    amqp.declare(&queue).await?;
    let started = Instant::now();
    publish_all(amqp, &queue, settings).await?;
    let publish = started.elapsed();
    let started = Instant::now();
    consume_all(amqp, &queue, settings.messages).await?;
    let consume = started.elapsed();

    let started = Instant::now();
    let (published, consumed) = tokio::join!(
        publish_all(amqp, &queue, settings),
        consume_all(amqp, &queue, settings.messages)
    );
    published?;
    consumed?;
    let together = started.elapsed();
    amqp.delete(&queue).await?;
    Ok(Timing {
        publish,
        consume,
        together,
    })
}

async fn publish_all(amqp: &AmqpQueue, queue: &str, settings: Settings) -> Result<()> {
    let messages = (0..settings.messages).map(message).collect::<Result<Vec<_>>>()?;
    futures::stream::iter(messages)
        .map(|message| amqp.publish(queue, message))
        .buffer_unordered(settings.in_flight)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<(), _>>()?;
    Ok(())
}

async fn consume_all(amqp: &AmqpQueue, queue: &str, messages: usize) -> Result<()> {
    let mut stream = amqp.consume(queue).await?;
    for _ in 0..messages {
        let delivery = stream.next().await.ok_or("the stream ended")??;
        delivery.ack().await?;
    }
    Ok(())
}

/// The queue raw lapin goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// `AmqpQueue`'s: a quorum queue with a delivery limit and a
    /// dead-letter queue.
    Quorum,
    /// A plain durable classic queue, for reference.
    Classic,
}

/// The same work through raw lapin.
async fn raw_lapin(
    connection: &Connection,
    amqp: &AmqpQueue,
    settings: Settings,
    topology: Topology,
) -> Result<Timing> {
    let queue = queue_name("raw");
    let publisher = connection.create_channel().await?;
    match topology {
        Topology::Quorum => amqp.declare(&queue).await?,
        Topology::Classic => {
            let durable = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            publisher
                .queue_declare(queue.as_str().into(), durable, FieldTable::default())
                .await?;
        }
    }
    publisher.confirm_select(ConfirmSelectOptions::default()).await?;
    let body = serde_json::to_vec(&serde_json::json!({ "n": 12345 }))?;

    let started = Instant::now();
    raw_publish(&publisher, &queue, &body, settings.messages).await?;
    let publish = started.elapsed();
    let started = Instant::now();
    raw_consume(connection, &queue, settings).await?;
    let consume = started.elapsed();

    let started = Instant::now();
    let (published, consumed) = tokio::join!(
        raw_publish(&publisher, &queue, &body, settings.messages),
        raw_consume(connection, &queue, settings)
    );
    published?;
    consumed?;
    let together = started.elapsed();
    publisher
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    if topology == Topology::Quorum {
        publisher
            .queue_delete(dead_letter_queue(&queue).into(), QueueDeleteOptions::default())
            .await?;
    }
    Ok(Timing {
        publish,
        consume,
        together,
    })
}

async fn raw_publish(channel: &Channel, queue: &str, body: &[u8], messages: usize) -> Result<()> {
    let properties = BasicProperties::default().with_delivery_mode(2);
    for n in 1..=messages {
        // Dropped confirms are collected by `wait_for_confirms`.
        let _confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties.clone(),
            )
            .await?;
        if n % CONFIRM_BATCH == 0 || n == messages {
            channel.wait_for_confirms().await?;
        }
    }
    Ok(())
}

async fn raw_consume(connection: &Connection, queue: &str, settings: Settings) -> Result<()> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(settings.prefetch, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            queue_name("raw-consumer").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for _ in 0..settings.messages {
        let delivery = consumer.next().await.ok_or("the consumer ended")??;
        delivery.ack(BasicAckOptions::default()).await?;
    }
    channel.close(200, "done".into()).await?;
    Ok(())
}
