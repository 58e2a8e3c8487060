//! [`Amqp10Queue`]: the publisher and consumer handle.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use dtask_core::infra::{DeliveryStream, QueueConsumer, QueueMessage, QueuePublisher};
use dtask_core::{Error, Result};

use crate::config::{Amqp10Config, Broker};
use crate::dead_letters::Amqp10DeadLetters;
use crate::error::Amqp10Error;
use crate::supervisor::Supervisor;
use crate::{consumer, publisher, topology};

/// A work queue on an AMQP 1.0 broker: publisher and consumer in one
/// cheap, cloneable handle over one supervised connection, and its dead
/// letters where the broker lets them be read ([`dead_letters`](Self::dead_letters)).
///
/// Publishing sends a durable message unsettled and returns once the
/// broker answers `accepted`; concurrent publishes share one sender link
/// per queue and pipeline. Each [`consume`](QueueConsumer::consume) stream
/// has a session and receiver link of its own. When the connection is
/// lost, a supervisor reconnects with backoff; publishes wait for it (up to
/// [`reconnect_timeout`](Amqp10Config::reconnect_timeout)) and are sent
/// again, and delivery streams attach again and go on. See the
/// [crate docs](crate) for what each broker does.
#[derive(Clone)]
pub struct Amqp10Queue {
    supervisor: Arc<Supervisor>,
}

impl Amqp10Queue {
    /// Connects to the broker `config` names.
    ///
    /// # Errors
    /// An [`Error::Backend`] naming the URL (credentials redacted) when the
    /// broker cannot be reached within
    /// [`connect_timeout`](Amqp10Config::connect_timeout) or refuses the
    /// connection; its source is an [`Amqp10Error`].
    ///
    /// # Cancel safety
    /// Dropping the future before it completes leaves no connection behind.
    pub async fn connect(config: Amqp10Config) -> Result<Self> {
        let supervisor = Supervisor::start(config).await?;
        Ok(Self {
            supervisor: Arc::new(supervisor),
        })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &Amqp10Config {
        self.supervisor.config()
    }

    /// Checks that the connection is up and the broker answers (by
    /// beginning and ending a session). Does not wait for a reconnection: a
    /// readiness probe should see the outage.
    ///
    /// # Errors
    /// An [`Error::Backend`] while the connection is down or when the
    /// broker does not answer.
    pub async fn ping(&self) -> Result<()> {
        let connection = self.supervisor.current().map_err(|error| Amqp10Error::Disconnected {
            url: self.supervisor.url().to_owned(),
            waited: std::time::Duration::ZERO,
            last_error: error.to_string(),
        })?;
        let timeout = self.config().outcome_timeout;
        let round_trip = async {
            let mut session = connection.begin_session().await?;
            session.end().await.map_err(|error| Amqp10Error::Attach {
                address: "(session)".into(),
                reason: error.to_string(),
            })
        };
        match tokio::time::timeout(timeout, round_trip).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Amqp10Error::Disconnected {
                url: self.supervisor.url().to_owned(),
                waited: timeout,
                last_error: "no answer to beginning a session".into(),
            }
            .into()),
        }
    }

    /// The queues' dead letters, on RabbitMQ and generic brokers; `None` on
    /// Service Bus, whose dead-letter sub-queue takes no marker message
    /// (reading it would take `com.microsoft:peek-message`, not
    /// implemented: use Service Bus Explorer or the Azure SDKs' peek).
    pub fn dead_letters(&self) -> Option<Amqp10DeadLetters> {
        match self.config().broker {
            Broker::ServiceBus => None,
            Broker::RabbitMq | Broker::Generic => Some(Amqp10DeadLetters::new(Arc::clone(&self.supervisor))),
        }
    }

    fn address(&self, queue: &str) -> Result<String> {
        topology::check_name(queue)?;
        Ok(topology::queue_address(self.config().broker, queue))
    }
}

impl fmt::Debug for Amqp10Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Amqp10Queue")
            .field("url", &self.supervisor.url())
            .field("broker", &self.config().broker)
            .field("connected", &self.supervisor.current().is_ok())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl QueuePublisher for Amqp10Queue {
    /// Sends `message` as a durable, unsettled message and waits for the
    /// broker's `accepted`. Does not wait for room (RabbitMQ's queues are
    /// unbounded; a broker that blocks on credit makes it wait, up to
    /// [`outcome_timeout`](Amqp10Config::outcome_timeout)).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a [`Payload::InMemory`](dtask_core::Payload::InMemory);
    /// [`Error::Invalid`] for a bad queue name; an [`Error::Backend`] when
    /// the broker rejects the message, keeps releasing it, gives no outcome
    /// within [`outcome_timeout`](Amqp10Config::outcome_timeout), or stays
    /// unreachable for [`reconnect_timeout`](Amqp10Config::reconnect_timeout).
    /// A message in flight when the connection dies is sent again on the
    /// next one: it is never reported published without `accepted`.
    ///
    /// # Cancel safety
    /// A dropped publish may or may not have been published.
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()> {
        let address = self.address(queue)?;
        publisher::publish(&self.supervisor, &address, &message).await
    }

    /// Hands every message to the link, in order, then waits for their
    /// outcomes together; a message that did not go that way is published
    /// on its own, as [`publish`](Self::publish) does.
    async fn publish_many(&self, queue: &str, messages: Vec<QueueMessage>) -> Vec<Result<()>> {
        match self.address(queue) {
            Ok(address) => publisher::publish_many(&self.supervisor, &address, &messages).await,
            Err(error) => messages
                .iter()
                .map(|_| Err(Error::invalid("queue name", error.to_string())))
                .collect(),
        }
    }

    /// As [`Amqp10Queue::ping`].
    async fn ping(&self) -> Result<()> {
        Amqp10Queue::ping(self).await
    }
}

#[async_trait]
impl QueueConsumer for Amqp10Queue {
    /// Attaches a receiver to `queue` (on RabbitMQ this declares it, a
    /// durable queue) and returns its deliveries. The stream never ends:
    /// after a lost link or connection it attaches again (logging a
    /// warning) and goes on. Deliveries received before that can no longer
    /// be acked (the broker delivers them again); nacking them succeeds.
    ///
    /// # Errors
    /// As [`publish`](QueuePublisher::publish), for the first attachment.
    ///
    /// # Cancel safety
    /// Dropping a pending `next()` of the stream loses no message.
    async fn consume(&self, queue: &str) -> Result<DeliveryStream> {
        consumer::consume(Arc::clone(&self.supervisor), queue).await
    }

    /// As [`Amqp10Queue::ping`].
    async fn ping(&self) -> Result<()> {
        Amqp10Queue::ping(self).await
    }
}
