//! Consuming: a delivery stream that survives reconnections; each
//! delivery's acknowledger is `acker`'s.
//!
//! Each stream is one task that owns a session of its own and the receiver
//! link on it. The task receives deliveries (granting at most
//! [`prefetch`](crate::Amqp10Config::prefetch) of credit beyond those
//! still unsettled) and settles them as their [`Acknowledger`]s ask.
//! When the link, its session or the connection breaks, it waits for the
//! supervisor's next connection and attaches again; deliveries of the lost
//! link can no longer be settled (the broker delivers them again). When the
//! stream is dropped and every delivery it gave out is settled, the task
//! ends its session, which hands back whatever the broker had sent ahead.

mod acker;

use std::sync::Arc;

use dtask_core::Result;
use dtask_core::infra::{Acknowledger, Delivery, DeliveryStream};
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::{Receiver, RecvError};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{ReceiverSettleMode, SenderSettleMode};
use fe2o3_amqp::types::messaging::{Body, Source};
use fe2o3_amqp::types::primitives::Value;
use futures::StreamExt;
use tokio::sync::mpsc;

use acker::{Acker, Settle, Settlement, spawn_lock_renewal, too_many};

use crate::config::{Broker, backoff, deadline_after};
use crate::connection::Connection;
use crate::error::Amqp10Error;
use crate::message::{self, Redelivery};
use crate::supervisor::Supervisor;
use crate::topology;

/// One receiver link on a session of its own.
struct Subscription {
    session: SessionHandle<()>,
    receiver: Receiver,
    generation: u64,
}

impl Subscription {
    /// Begins a session on `connection` and attaches a receiver to
    /// `queue`, with `credit`.
    async fn open(connection: &Connection, queue: &str, credit: u32, generation: u64) -> Result<Self, Amqp10Error> {
        let broker = connection.broker;
        let address = topology::queue_address(broker, queue);
        connection.authorize(&address).await?;
        let mut session = connection.begin_session().await?;
        let source = Source::builder()
            .address(address.clone())
            .durable(topology::durability(broker))
            .build();
        // Peek-lock on Service Bus (the .NET client's "settle on dispose"):
        // the broker sends unsettled and settles once the receiver's
        // outcome arrives, the receiver settling after it.
        let (sender_mode, receiver_mode) = match broker {
            Broker::ServiceBus => (SenderSettleMode::Unsettled, ReceiverSettleMode::Second),
            Broker::RabbitMq | Broker::Generic => (SenderSettleMode::Mixed, ReceiverSettleMode::First),
        };
        let attached = Receiver::builder()
            .name(format!("dtask-receiver-{}", uuid::Uuid::new_v4().simple()))
            .source(source)
            .sender_settle_mode(sender_mode)
            .receiver_settle_mode(receiver_mode)
            .credit_mode(CreditMode::Manual)
            .auto_accept(false)
            .attach(&mut session)
            .await;
        let attach_failed = |reason: String| Amqp10Error::Attach {
            address: address.clone(),
            reason,
        };
        let mut receiver = match attached {
            Ok(receiver) => receiver,
            Err(error) => {
                let _ = session.end().await;
                return Err(attach_failed(error.to_string()));
            }
        };
        if let Err(error) = receiver.set_credit(credit).await {
            let _ = session.end().await;
            return Err(attach_failed(error.to_string()));
        }
        Ok(Self {
            session,
            receiver,
            generation,
        })
    }

    /// Detaches the link and ends the session, which hands every delivery
    /// it left unsettled back to the queue. Best effort: a broken session
    /// has handed them back already.
    async fn close(mut self) {
        let _ = self.receiver.close().await;
        let _ = self.session.end().await;
    }
}

/// Starts consuming `queue`: attaches once (so that an error surfaces
/// here), then returns a stream that attaches again after any failure.
pub(crate) async fn consume(supervisor: Arc<Supervisor>, queue: &str) -> Result<DeliveryStream> {
    topology::check_name(queue)?;
    let deadline = deadline_after(supervisor.config().reconnect_timeout);
    let connection = supervisor.connection(deadline).await?;
    let prefetch = supervisor.config().prefetch.max(1);
    let subscription = Subscription::open(&connection, queue, prefetch, connection.generation).await?;
    let (deliveries, stream) = mpsc::unbounded_channel();
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let task = StreamTask {
        supervisor,
        queue: queue.to_owned(),
        prefetch,
        redelivery: match connection.broker {
            Broker::RabbitMq => Redelivery::FirstAcquirer,
            Broker::ServiceBus | Broker::Generic => Redelivery::HeaderCount,
        },
        deliveries,
        commands_tx,
        outstanding: 0,
        credit_left: prefetch,
        pending: 0,
        stream_gone: false,
        failures: 0,
    };
    tokio::spawn(task.run(subscription, commands));
    Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(stream).boxed())
}

/// The task behind one delivery stream.
struct StreamTask {
    supervisor: Arc<Supervisor>,
    queue: String,
    prefetch: u32,
    redelivery: Redelivery,
    deliveries: mpsc::UnboundedSender<Result<Delivery>>,
    commands_tx: mpsc::UnboundedSender<Settle>,
    /// Deliveries of the current link given out and not settled yet.
    outstanding: u32,
    /// The credit the broker still has on the current link, as far as
    /// this task knows (granted, minus the deliveries received since).
    credit_left: u32,
    /// Deliveries of any link given out whose acknowledger has not
    /// reported yet (each reports once, settled or dropped).
    pending: u64,
    stream_gone: bool,
    /// Failed attachments in a row.
    failures: u32,
}

impl StreamTask {
    async fn run(mut self, subscription: Subscription, mut commands: mpsc::UnboundedReceiver<Settle>) {
        let mut link = Some(subscription);
        loop {
            if self.stream_gone && self.pending == 0 {
                break;
            }
            tokio::select! {
                Some(command) = commands.recv() => self.settle(&mut link, command).await,
                // No more credit is granted; what the broker still sends is
                // released. (Taking credit back races with deliveries in
                // flight, which RabbitMQ then sends beyond the credit and
                // the client refuses, breaking the link under deliveries
                // still to be acked.)
                () = self.deliveries.closed(), if !self.stream_gone => self.stream_gone = true,
                received = recv(&mut link) => match received {
                    Ok(delivery) => self.on_delivery(&mut link, delivery).await,
                    Err(error) => {
                        tracing::warn!(queue = %self.queue, %error, "the receiver link failed; attaching again");
                        self.supervisor.nudge();
                        if let Some(lost) = link.take() {
                            lost.close().await;
                        }
                    }
                },
                opened = reopen(&self.supervisor, &self.queue, self.prefetch, self.failures),
                    if link.is_none() && !self.stream_gone => match opened {
                    Ok(subscription) => {
                        tracing::info!(queue = %self.queue, "receiving again");
                        self.failures = 0;
                        self.outstanding = 0;
                        self.credit_left = self.prefetch;
                        link = Some(subscription);
                    }
                    Err(error) => {
                        self.failures = self.failures.saturating_add(1);
                        tracing::warn!(queue = %self.queue, %error, "attaching the receiver failed; trying again");
                    }
                },
            }
        }
        if let Some(subscription) = link {
            subscription.close().await;
        }
    }

    /// A delivery arrived: hand it to the stream, or release it when the
    /// stream is gone; a message that is not dtask's is dead-lettered.
    async fn on_delivery(
        &mut self,
        link: &mut Option<Subscription>,
        delivery: fe2o3_amqp::link::delivery::Delivery<Body<Value>>,
    ) {
        let Some(subscription) = link.as_ref() else { return };
        let generation = subscription.generation;
        let info = DeliveryInfo::from(&delivery);
        let tag = delivery.delivery_tag().to_vec();
        let link_name = subscription.receiver.name().to_owned();
        let received = Arc::new(delivery.into_message());
        self.outstanding += 1;
        self.credit_left = self.credit_left.saturating_sub(1);
        if self.stream_gone {
            self.settle(
                link,
                Settle {
                    generation,
                    info,
                    settlement: Settlement::Release,
                    counted: false,
                    reply: None,
                },
            )
            .await;
            return;
        }
        self.pending += 1;
        let decoded = message::decode(&received);
        let count = message::delivery_count(&received, self.redelivery);
        let mut acker = Acker {
            commands: self.commands_tx.clone(),
            generation,
            info: Some(info),
            supervisor: Arc::clone(&self.supervisor),
            queue: self.queue.clone(),
            received,
            deliveries: count,
            renewal: None,
            in_background: false,
        };
        if self.supervisor.config().broker == Broker::ServiceBus {
            acker.renewal = Some(spawn_lock_renewal(&self.supervisor, &self.queue, &tag, link_name));
        }
        let max = self.supervisor.config().max_deliveries.max(1);
        match decoded {
            Ok(_) if count > max => {
                let reason = too_many(count, max);
                tracing::warn!(queue = %self.queue, %reason, "dead-lettering a message");
                let queue = self.queue.clone();
                tokio::spawn(async move {
                    if let Err(error) = Box::new(acker).dead_letter(&reason).await {
                        tracing::warn!(%queue, %error, "dead-lettering a message delivered too often failed; it stays in the queue");
                    }
                });
            }
            Ok(message) => {
                // A stream dropped meanwhile drops the delivery, whose
                // acknowledger hands it back.
                let _ = self.deliveries.send(Ok(Delivery::new(message, count, Box::new(acker))));
            }
            Err(error) => {
                let reason = format!("not a message dtask can read: {error}");
                tracing::warn!(queue = %self.queue, %reason, "dead-lettering a message");
                let queue = self.queue.clone();
                tokio::spawn(async move {
                    if let Err(error) = Box::new(acker).dead_letter(&reason).await {
                        tracing::warn!(%queue, %error, "dead-lettering an unreadable message failed; it stays in the queue");
                    }
                });
            }
        }
    }

    /// Settles a delivery on its link, if that link is still the current
    /// one, and grants the credit it frees.
    async fn settle(&mut self, link: &mut Option<Subscription>, command: Settle) {
        let Settle {
            generation,
            info,
            settlement,
            counted,
            reply,
        } = command;
        if counted {
            self.pending = self.pending.saturating_sub(1);
        }
        let result = match link.as_mut() {
            Some(subscription) if subscription.generation == generation => {
                self.outstanding = self.outstanding.saturating_sub(1);
                let receiver = &subscription.receiver;
                let disposed = match settlement {
                    Settlement::Accept => receiver.accept(info).await,
                    Settlement::Release => receiver.release(info).await,
                    Settlement::Reject(error) => receiver.reject(info, error).await,
                    Settlement::Modify(modified) => receiver.modify(info, modified).await,
                };
                let disposed = match disposed {
                    Ok(()) => self.top_up(subscription).await,
                    Err(error) => Err(error.to_string()),
                };
                disposed.map_err(|reason| {
                    self.supervisor.nudge();
                    Amqp10Error::Settle {
                        queue: self.queue.clone(),
                        reason,
                    }
                })
            }
            _ => Err(Amqp10Error::DeliveryLinkLost),
        };
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

impl StreamTask {
    /// Grants credit again once the broker has used all it had (so no
    /// delivery is in flight when the new credit arrives: RabbitMQ 3.10
    /// counts a grant made while deliveries are in flight as credit on top
    /// of them, and sends more than the client allows), up to
    /// [`prefetch`](crate::Amqp10Config::prefetch) deliveries unsettled.
    async fn top_up(&mut self, subscription: &mut Subscription) -> Result<(), String> {
        if self.stream_gone || self.credit_left > 0 || self.outstanding >= self.prefetch {
            return Ok(());
        }
        let credit = self.prefetch - self.outstanding;
        subscription
            .receiver
            .set_credit(credit)
            .await
            .map_err(|error| error.to_string())?;
        self.credit_left = credit;
        Ok(())
    }
}

/// The next delivery of `link`; pending forever without one.
async fn recv(link: &mut Option<Subscription>) -> Result<fe2o3_amqp::link::delivery::Delivery<Body<Value>>, RecvError> {
    match link {
        Some(subscription) => subscription.receiver.recv::<Body<Value>>().await,
        None => std::future::pending().await,
    }
}

/// Attaches a new receiver once the supervisor has a connection, after a
/// backoff when earlier attempts failed.
async fn reopen(
    supervisor: &Supervisor,
    queue: &str,
    prefetch: u32,
    failures: u32,
) -> Result<Subscription, Amqp10Error> {
    if failures > 0 {
        tokio::time::sleep(backoff(supervisor.config(), failures - 1)).await;
    }
    let connection = supervisor.connection_eventually().await;
    let opened = Subscription::open(&connection, queue, prefetch, connection.generation).await;
    if opened.is_err() {
        supervisor.nudge();
    }
    opened
}
