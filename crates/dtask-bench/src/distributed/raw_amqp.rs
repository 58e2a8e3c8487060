//! The raw RabbitMQ baseline, as `dtask-amqp`'s `examples/throughput.rs`
//! measures it: `lapin` publishing persistent messages on a confirm-mode
//! channel, confirms awaited every 100, while a consumer on another
//! channel (same prefetch as the workers) acks each delivery.

use std::time::{Duration, Instant};

use dtask::distributed::dtask_amqp::AmqpQueue;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

/// How many publishes go between two waits for confirms.
pub(crate) const CONFIRM_BATCH: usize = 100;

/// The queue the raw run goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topology {
    /// `AmqpQueue`'s own: a quorum queue with a delivery limit and a
    /// dead-letter queue (declared by `AmqpQueue::declare`).
    Quorum,
    /// A plain durable classic queue.
    Classic,
}

/// Publishes `n` messages and, at the same time, consumes and acks them;
/// returns the time from the first publish to the last ack. The queue is
/// deleted afterwards.
///
/// # Errors
/// A broker error.
pub(crate) async fn run(
    connection: &Connection,
    amqp: &AmqpQueue,
    queue: &str,
    topology: Topology,
    n: usize,
    prefetch: u16,
) -> anyhow::Result<Duration> {
    let publisher = connection.create_channel().await?;
    match topology {
        Topology::Quorum => amqp.declare(queue).await?,
        Topology::Classic => {
            let durable = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            publisher
                .queue_declare(queue.into(), durable, FieldTable::default())
                .await?;
        }
    }
    publisher.confirm_select(ConfirmSelectOptions::default()).await?;
    let body = br#"{"n":12345,"name":"small message"}"#;
    let started = Instant::now();
    let (published, consumed) = tokio::join!(
        publish(&publisher, queue, body, n),
        consume(connection, queue, n, prefetch)
    );
    published?;
    consumed?;
    let elapsed = started.elapsed();
    match topology {
        Topology::Quorum => {
            amqp.delete(queue).await?;
        }
        Topology::Classic => {
            publisher
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await?;
        }
    }
    publisher.close(200, "done".into()).await?;
    Ok(elapsed)
}

async fn publish(channel: &Channel, queue: &str, body: &[u8], n: usize) -> anyhow::Result<()> {
    let properties = BasicProperties::default().with_delivery_mode(2);
    for i in 1..=n {
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
        if i % CONFIRM_BATCH == 0 || i == n {
            channel.wait_for_confirms().await?;
        }
    }
    Ok(())
}

async fn consume(connection: &Connection, queue: &str, n: usize, prefetch: u16) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            format!("{queue}-consumer").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for _ in 0..n {
        let delivery = consumer
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
        delivery.ack(BasicAckOptions::default()).await?;
    }
    channel.close(200, "done".into()).await?;
    Ok(())
}
