//! Consuming: a delivery stream that survives reconnections, and the
//! acknowledger of each delivery.

use std::sync::Arc;

use async_trait::async_trait;
use dtask_core::Result;
use dtask_core::infra::{Acknowledger, Delivery, DeliveryStream};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Acker, BasicProperties, Channel, Consumer};

use crate::config::{backoff, deadline_after};
use crate::error::{AmqpError, client};
use crate::session::Session;
use crate::supervisor::Supervisor;
use crate::{message, publisher, topology};

/// One `basic.consume` on a channel of its own.
struct Subscription {
    channel: Arc<Channel>,
    consumer: Consumer,
}

/// What the delivery stream carries from one item to the next.
struct State {
    supervisor: Arc<Supervisor>,
    queue: String,
    subscription: Option<Subscription>,
}

impl Drop for State {
    /// The stream is dropped (a worker stopping): the messages the broker
    /// pushed ahead to this consumer go back to the queue now.
    fn drop(&mut self) {
        if let Some(subscription) = self.subscription.take() {
            subscription.hand_back_prefetched(&self.queue);
        }
    }
}

/// How long a dropped stream's consumer may take to hand its prefetched
/// messages back; after that they come back when its channel closes.
const HAND_BACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Subscription {
    /// Cancels the consumer and nacks (requeues) the deliveries the broker
    /// pushed to it that nobody took, in the background. Without this they
    /// would stay unacknowledged until the channel closes, which waits for
    /// the deliveries still being worked on (the channel stays open for
    /// their acks): a stopping worker would hold them for its whole
    /// shutdown grace.
    fn hand_back_prefetched(self, queue: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: they come back when the connection closes
        };
        if !self.channel.status().connected() {
            return; // the broker requeues them itself
        }
        let queue = queue.to_owned();
        runtime.spawn(async move {
            let Subscription { channel, mut consumer } = self;
            if let Err(error) = channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await
            {
                tracing::debug!(%queue, %error, "cancelling the consumer failed; its messages come back when its channel closes");
                return;
            }
            // After the broker's cancel-ok, the consumer yields what it had
            // buffered, then ends.
            let requeue_buffered = async {
                let mut handed_back = 0u32;
                while let Some(Ok(delivery)) = consumer.next().await {
                    if delivery.acker.nack(requeue()).await.is_ok() {
                        handed_back += 1;
                    }
                }
                handed_back
            };
            match tokio::time::timeout(HAND_BACK_TIMEOUT, requeue_buffered).await {
                Ok(0) => {}
                Ok(handed_back) => tracing::debug!(%queue, handed_back, "returned the prefetched messages to the queue"),
                Err(_) => tracing::debug!(%queue, "returning the prefetched messages timed out"),
            }
        });
    }
}

/// Starts consuming `queue`: declares it, subscribes once (so that an
/// error surfaces here), and returns a stream that subscribes again after
/// any failure.
pub(crate) async fn consume(supervisor: Arc<Supervisor>, queue: &str) -> Result<DeliveryStream> {
    topology::queue_name(queue)?;
    let deadline = deadline_after(supervisor.config().reconnect_timeout);
    let session = supervisor.session(deadline).await?;
    let subscription = subscribe(&supervisor, &session, queue).await?;
    let state = State {
        supervisor,
        queue: queue.to_owned(),
        subscription: Some(subscription),
    };
    Ok(futures::stream::unfold(state, next).boxed())
}

/// Opens a channel, declares the queue, sets the prefetch and subscribes.
async fn subscribe(supervisor: &Supervisor, session: &Session, queue: &str) -> Result<Subscription> {
    let config = supervisor.config();
    let channel = session.connection.create_channel().await.map_err(client)?;
    topology::declare(&channel, queue, config.max_deliveries).await?;
    channel
        .basic_qos(config.prefetch.max(1), BasicQosOptions::default())
        .await
        .map_err(client)?;
    // Named after the connection, when the name fits.
    let id = uuid::Uuid::new_v4().simple();
    let tag = ShortString::try_new(format!("{}-{id}", config.connection_name))
        .unwrap_or_else(|_| ShortString::from(format!("dtask-{id}")));
    let consumer = channel
        .basic_consume(queue.into(), tag, BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(client)?;
    Ok(Subscription {
        channel: Arc::new(channel),
        consumer,
    })
}

/// Subscribes again, as long as it takes.
async fn resubscribe(supervisor: &Supervisor, queue: &str) -> Subscription {
    let mut attempt = 0u32;
    loop {
        let session = supervisor.session_eventually().await;
        match subscribe(supervisor, &session, queue).await {
            Ok(subscription) => {
                tracing::info!(queue, generation = session.generation, "consuming again");
                return subscription;
            }
            Err(error) => {
                tracing::warn!(queue, attempt, %error, "cannot consume; trying again");
                supervisor.nudge();
                tokio::time::sleep(backoff(supervisor.config(), attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// The next delivery. Never ends: a consumer that fails or is cancelled
/// by the broker is replaced.
async fn next(mut state: State) -> Option<(Result<Delivery>, State)> {
    loop {
        let Some(subscription) = state.subscription.as_mut() else {
            state.subscription = Some(resubscribe(&state.supervisor, &state.queue).await);
            continue;
        };
        match subscription.consumer.next().await {
            Some(Ok(delivery)) if !subscription.channel.status().connected() || !delivery.acker.usable() => {
                // Received before the channel broke: the broker has put the
                // message back and delivers it again after reconnecting.
                // Running it now would only repeat work it cannot ack.
                tracing::debug!(queue = %state.queue, "dropping a delivery of a closed channel; it will come again");
            }
            Some(Ok(delivery)) => {
                let channel = &subscription.channel;
                if let Some(delivery) = convert(delivery, &state.supervisor, channel, &state.queue).await {
                    return Some((Ok(delivery), state));
                }
            }
            Some(Err(error)) => {
                tracing::warn!(queue = %state.queue, %error, "the consumer failed; consuming again");
                state.subscription = None;
                state.supervisor.nudge();
            }
            None => {
                tracing::warn!(queue = %state.queue, "the broker cancelled the consumer; consuming again");
                state.subscription = None;
            }
        }
    }
}

/// The delivery of a dtask message; `None` for a message that is not one,
/// which is rejected (and so dead-lettered).
async fn convert(
    delivery: lapin::message::Delivery,
    supervisor: &Arc<Supervisor>,
    channel: &Arc<Channel>,
    queue: &str,
) -> Option<Delivery> {
    let lapin::message::Delivery {
        properties,
        data,
        acker,
        ..
    } = delivery;
    match message::decode(&properties, data) {
        Ok((message, count)) => {
            let body = message
                .payload
                .encoded()
                .map(|(_, bytes)| bytes.clone())
                .unwrap_or_default();
            let acker = AmqpAcker {
                acker,
                supervisor: Arc::clone(supervisor),
                channel: Arc::clone(channel),
                deliveries: count,
                queue: queue.to_owned(),
                properties,
                body,
                settled: false,
            };
            Some(Delivery::new(message, count, Box::new(acker)))
        }
        Err(error) => {
            tracing::warn!(queue, %error, "rejecting a message that dtask cannot read; it goes to the dead-letter queue");
            let _ = acker.reject(BasicRejectOptions { requeue: false }).await;
            None
        }
    }
}

/// Settles one delivery on the channel it came on; nacks it in the
/// background when dropped unsettled.
struct AmqpAcker {
    acker: Acker,
    /// Publishes dead letters, confirmed.
    supervisor: Arc<Supervisor>,
    /// Keeps the channel open until the delivery is settled, even when
    /// its stream is gone.
    channel: Arc<Channel>,
    /// How many times it has been delivered, this time included.
    deliveries: u32,
    /// The queue it came from, and the message as delivered: what a dead
    /// letter republishes.
    queue: String,
    properties: BasicProperties,
    body: bytes::Bytes,
    settled: bool,
}

fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        multiple: false,
        requeue: true,
    }
}

#[async_trait]
impl Acknowledger for AmqpAcker {
    /// # Errors
    /// As the broker reports, or [`AmqpError::SettleTimeout`] when a
    /// connection that broke under the ack leaves it unanswered for
    /// [`confirm_timeout`](crate::AmqpConfig::confirm_timeout).
    async fn ack(mut self: Box<Self>) -> Result<()> {
        self.settled = true;
        match self.within_timeout(self.acker.ack(BasicAckOptions::default())).await? {
            Ok(true) => Ok(()),
            Ok(false) => Err(AmqpError::DeliveryChannelClosed.into()),
            Err(error) => Err(client(error)),
        }
    }

    async fn nack(mut self: Box<Self>) -> Result<()> {
        self.settled = true;
        match self.within_timeout(self.acker.nack(requeue())).await? {
            Ok(_) => Ok(()),
            // A closed channel hands its deliveries back: that is a nack.
            Err(_) if self.acker.poisoned() || !self.channel.status().connected() => Ok(()),
            Err(error) => Err(client(error)),
        }
    }

    /// Publishes the message to the dead-letter queue with `reason` and
    /// waits for the broker's confirmation, then acks it. When the publish
    /// is not confirmed the message is nacked and comes back; when the ack
    /// fails after a confirmed publish, the message comes back too and is
    /// dead-lettered again (a dead letter may be listed twice, never lost).
    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<()> {
        tracing::warn!(queue = %self.queue, reason, "moving a message to the dead-letter queue");
        if let Err(error) = self.publish_dead_letter(reason).await {
            self.settled = true;
            let _ = self.acker.nack(requeue()).await;
            return Err(error);
        }
        self.ack().await
    }
}

impl AmqpAcker {
    /// Awaits a settlement, for at most the confirm timeout: lapin may
    /// leave one unanswered when the connection breaks as it is sent.
    async fn within_timeout<T>(&self, settling: impl std::future::Future<Output = T>) -> Result<T> {
        let timeout = self.supervisor.config().confirm_timeout;
        tokio::time::timeout(timeout, settling).await.map_err(|_| {
            AmqpError::SettleTimeout {
                queue: self.queue.clone(),
                timeout,
            }
            .into()
        })
    }

    /// Publishes the message, with `reason` in the
    /// [`DEAD_LETTER_REASON_HEADER`](message::DEAD_LETTER_REASON_HEADER),
    /// to the queue's dead-letter queue on the confirmed publisher channel,
    /// and waits for the broker's confirmation.
    async fn publish_dead_letter(&self, reason: &str) -> Result<()> {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(
            message::DEAD_LETTER_REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        headers.insert(
            message::DEAD_LETTER_DELIVERIES_HEADER.into(),
            AMQPValue::LongString(LongString::from(self.deliveries.to_string())),
        );
        let properties = self.properties.clone().with_headers(headers);
        let target = topology::dead_letter_queue(&self.queue);
        publisher::publish_to(&self.supervisor, &self.queue, &target, &properties, &self.body).await
    }
}

impl Drop for AmqpAcker {
    fn drop(&mut self) {
        if self.settled || !self.acker.usable() {
            return;
        }
        // Without a runtime, the message comes back when the channel closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (acker, channel) = (self.acker.clone(), Arc::clone(&self.channel));
            runtime.spawn(async move {
                let _ = acker.nack(requeue()).await;
                drop(channel);
            });
        }
    }
}
