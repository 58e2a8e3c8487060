//! Each delivery's acknowledger, and what it asks of its stream's task:
//! accept, release, reject or modify the delivery on the link it came on.
//! Handing back and dead-lettering on RabbitMQ publish a copy first (see
//! the crate docs); Service Bus deliveries have their lock renewed while
//! held.

use std::sync::Arc;

use async_trait::async_trait;
use dtask_core::Result;
use dtask_core::infra::Acknowledger;
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::types::definitions::{self, ErrorCondition};
use fe2o3_amqp::types::messaging::Modified;
use fe2o3_amqp::types::primitives::{OrderedMap, Symbol, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::Broker;
use crate::error::Amqp10Error;
use crate::message::{self, Received};
use crate::supervisor::Supervisor;
use crate::{publisher, servicebus, topology};

/// The error condition that dead-letters a message on Service Bus.
const SERVICE_BUS_DEAD_LETTER: &str = "com.microsoft:dead-letter";

/// How a delivery is settled.
#[derive(Debug, Clone)]
pub(super) enum Settlement {
    Accept,
    Release,
    Reject(definitions::Error),
    Modify(Modified),
}

/// What an acknowledger asks of the stream's task.
pub(super) struct Settle {
    pub(super) generation: u64,
    pub(super) info: DeliveryInfo,
    pub(super) settlement: Settlement,
    /// Whether this reports the end of a delivery given out (each
    /// acknowledger reports once).
    pub(super) counted: bool,
    pub(super) reply: Option<oneshot::Sender<Result<(), Amqp10Error>>>,
}

/// The reason of a message dead-lettered for its deliveries.
pub(super) fn too_many(deliveries: u32, max: u32) -> String {
    format!("delivered {deliveries} times; at most {max} are allowed (max_deliveries)")
}

/// Renews the lock of a Service Bus delivery on a timer until aborted (the
/// delivery is settled or dropped). A failed renewal is logged: the lock
/// may then expire and the message go to another receiver, whose run the
/// task's own lock fences.
pub(super) fn spawn_lock_renewal(
    supervisor: &Arc<Supervisor>,
    queue: &str,
    tag: &[u8],
    link_name: String,
) -> JoinHandle<()> {
    let (supervisor, queue) = (Arc::clone(supervisor), queue.to_owned());
    let token = servicebus::lock_token(tag);
    tokio::spawn(async move {
        let Some(token) = token else {
            tracing::warn!(%queue, "a Service Bus delivery tag is not a lock token; its lock is not renewed");
            return;
        };
        let interval = supervisor.config().lock_renewal_interval;
        loop {
            tokio::time::sleep(interval).await;
            let Ok(connection) = supervisor.current() else {
                continue;
            };
            let renewed = match connection.management(&queue).await {
                Ok(management) => management
                    .renew_lock(token, &link_name)
                    .await
                    .map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            if let Err(reason) = renewed {
                connection.forget_management(&queue);
                tracing::warn!(error = %Amqp10Error::LockRenewal { queue: queue.clone(), reason }, "lock renewal failed");
            }
        }
    })
}

/// Settles one delivery through its stream's task; hands it back when
/// dropped unsettled.
pub(super) struct Acker {
    pub(super) commands: mpsc::UnboundedSender<Settle>,
    pub(super) generation: u64,
    /// `None` once settled.
    pub(super) info: Option<DeliveryInfo>,
    pub(super) supervisor: Arc<Supervisor>,
    pub(super) queue: String,
    /// The message as delivered: what copies are made of.
    pub(super) received: Arc<Received>,
    /// How many times it has been delivered, this time included.
    pub(super) deliveries: u32,
    /// The Service Bus lock renewal, stopped on settlement.
    pub(super) renewal: Option<JoinHandle<()>>,
    /// Whether this is the copy a dropped acknowledger hands back in the
    /// background: dropped unsettled in turn (its task cancelled by a
    /// runtime shutting down), it releases at once instead of spawning.
    pub(super) in_background: bool,
}

impl Acker {
    fn broker(&self) -> Broker {
        self.supervisor.config().broker
    }

    /// Asks the stream's task to settle the delivery, and waits for the
    /// answer (at most the outcome timeout).
    async fn settle(&mut self, settlement: Settlement) -> Result<(), Amqp10Error> {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let info = self.info.take().ok_or(Amqp10Error::DeliveryLinkLost)?;
        let (reply, answer) = oneshot::channel();
        let command = Settle {
            generation: self.generation,
            info,
            settlement,
            counted: true,
            reply: Some(reply),
        };
        self.commands.send(command).map_err(|_| Amqp10Error::DeliveryLinkLost)?;
        let timeout = self.supervisor.config().outcome_timeout;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Amqp10Error::DeliveryLinkLost),
            Err(_) => Err(Amqp10Error::Settle {
                queue: self.queue.clone(),
                reason: format!("no answer within {timeout:?}"),
            }),
        }
    }

    /// Hands the delivery back so that it is delivered again, counted; on
    /// its [`max_deliveries`](crate::Amqp10Config::max_deliveries)-th
    /// delivery, moves it to the dead letters instead.
    ///
    /// RabbitMQ 3.x keeps no delivery count and closes the session on
    /// `modified`: a copy carrying the count is published to the queue
    /// (accepted) and the original accepted; when the copy cannot be
    /// published the original is released (delivered again, counted one
    /// more through `first-acquirer`). Elsewhere: `modified` with
    /// `delivery-failed`, which raises the broker's count.
    async fn hand_back(&mut self) -> Result<(), Amqp10Error> {
        let max = self.supervisor.config().max_deliveries.max(1);
        if self.deliveries >= max {
            let reason = too_many(self.deliveries, max);
            tracing::warn!(queue = %self.queue, %reason, "moving a message to the dead-letter queue");
            return self
                .move_to_dead_letters(&reason)
                .await
                .map_err(|error| Amqp10Error::Settle {
                    queue: self.queue.clone(),
                    reason: error.to_string(),
                });
        }
        match self.broker() {
            Broker::RabbitMq => {
                let mut copy = message::copy(&self.received);
                message::set_deliveries(&mut copy, self.deliveries);
                let address = topology::queue_address(Broker::RabbitMq, &self.queue);
                match publisher::publish_message(&self.supervisor, &address, &copy).await {
                    // The copy is in the queue; if the original cannot be
                    // accepted it comes back too (a duplicate, never a loss).
                    Ok(()) => match self.settle(Settlement::Accept).await {
                        Ok(()) | Err(Amqp10Error::DeliveryLinkLost) => Ok(()),
                        Err(error) => Err(error),
                    },
                    Err(error) => {
                        tracing::debug!(queue = %self.queue, %error, "republishing a handed-back message failed; releasing it");
                        self.settle(Settlement::Release).await
                    }
                }
            }
            Broker::ServiceBus | Broker::Generic => {
                self.settle(Settlement::Modify(Modified {
                    delivery_failed: Some(true),
                    undeliverable_here: None,
                    message_annotations: None,
                }))
                .await
            }
        }
    }
}

#[async_trait]
impl Acknowledger for Acker {
    /// `accepted` (Service Bus: complete).
    ///
    /// # Errors
    /// [`Amqp10Error::DeliveryLinkLost`] when the link it came on is gone
    /// (the broker delivers it again), or the link's error.
    async fn ack(mut self: Box<Self>) -> Result<()> {
        Ok(self.settle(Settlement::Accept).await?)
    }

    /// Hands the delivery back (see the crate docs: a counted copy on
    /// RabbitMQ, `modified` with `delivery-failed` elsewhere). A delivery
    /// whose link is gone is delivered again anyway: that is a success.
    async fn nack(mut self: Box<Self>) -> Result<()> {
        match self.hand_back().await {
            Ok(()) | Err(Amqp10Error::DeliveryLinkLost) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Service Bus: `rejected` with `com.microsoft:dead-letter` and the
    /// reason in `DeadLetterReason`. Elsewhere: a copy with the reason is
    /// published to the dead-letter queue and accepted by the broker, then
    /// the original is accepted; when the copy fails, the original is
    /// released and stays in the queue.
    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<()> {
        tracing::warn!(queue = %self.queue, reason, "moving a message to the dead-letter queue");
        self.move_to_dead_letters(reason).await
    }
}

impl Acker {
    /// Service Bus: `rejected` with `com.microsoft:dead-letter`.
    /// Elsewhere: a copy with the reason, accepted by the dead-letter
    /// queue, then the original accepted (released when the copy fails).
    async fn move_to_dead_letters(&mut self, reason: &str) -> Result<()> {
        if self.broker() == Broker::ServiceBus {
            let mut info = OrderedMap::new();
            info.insert(
                Symbol::from(message::SERVICE_BUS_REASON),
                Value::String(reason.to_owned()),
            );
            info.insert(
                Symbol::from(message::SERVICE_BUS_DESCRIPTION),
                Value::String(format!("dead-lettered by dtask after {} deliveries", self.deliveries)),
            );
            let error = definitions::Error {
                condition: ErrorCondition::Custom(Symbol::from(SERVICE_BUS_DEAD_LETTER)),
                description: Some(reason.to_owned()),
                info: Some(Box::new(info)),
            };
            return Ok(self.settle(Settlement::Reject(error)).await?);
        }
        let mut copy = message::copy(&self.received);
        message::set_property(&mut copy, message::DEAD_LETTER_REASON_PROPERTY, reason.to_owned());
        message::set_property(
            &mut copy,
            message::DEAD_LETTER_DELIVERIES_PROPERTY,
            self.deliveries.to_string(),
        );
        let address = topology::dead_letter_address(self.broker(), &self.queue);
        if let Err(error) = publisher::publish_message(&self.supervisor, &address, &copy).await {
            // Either way it comes back: released, or its link is gone.
            let _ = self.settle(Settlement::Release).await;
            return Err(error);
        }
        Ok(self.settle(Settlement::Accept).await?)
    }
}

impl Drop for Acker {
    /// Dropped unsettled: handed back in the background (as `nack`), or
    /// released at once without a runtime (or when the background hand-back
    /// itself is dropped).
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let Some(info) = self.info.take() else { return };
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|_| !self.in_background);
        let Some(runtime) = runtime else {
            let _ = self.commands.send(Settle {
                generation: self.generation,
                info,
                settlement: Settlement::Release,
                counted: true,
                reply: None,
            });
            return;
        };
        let mut acker = Acker {
            commands: self.commands.clone(),
            generation: self.generation,
            info: Some(info),
            supervisor: Arc::clone(&self.supervisor),
            queue: self.queue.clone(),
            received: Arc::clone(&self.received),
            deliveries: self.deliveries,
            renewal: None,
            in_background: true,
        };
        runtime.spawn(async move {
            if let Err(error) = acker.hand_back().await {
                tracing::debug!(queue = %acker.queue, %error, "handing back a dropped delivery failed; the broker delivers it again");
            }
        });
    }
}
