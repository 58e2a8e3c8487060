//! Reading and removing the dead letters of a queue on RabbitMQ or a
//! generic broker (`<queue>.dead-letter`).
//!
//! AMQP has no way to look at a message without taking it, and a receiver
//! cannot tell when a queue has nothing more for it. So a listing first
//! publishes a marker message of its own to the dead-letter queue (and
//! waits for `accepted`), then, on a session of its own, takes messages
//! without settling them until the marker comes, accepts the marker (which
//! removes it) and ends the session, which hands every other message back
//! in its place. Removing one accepts that one on the way. Both are
//! operator tools for dead-letter queues of modest size; a listing running
//! beside another may miss the messages the other holds for a moment.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use dtask_core::infra::{DeadLetter, DeadLetters};
use dtask_core::{Error, Result};
use fe2o3_amqp::link::Receiver;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::types::messaging::{Body, Data, Message, MessageId, Properties, Source};
use fe2o3_amqp::types::primitives::{Binary, Value};

use crate::config::deadline_after;
use crate::error::Amqp10Error;
use crate::message::{self, Received};
use crate::supervisor::Supervisor;
use crate::{publisher, topology};

/// The application property of a listing's marker message.
const MARKER_PROPERTY: &str = "dtask-dead-letter-marker";
/// How much credit the listing grants at a time.
const CREDIT: u32 = 256;

/// The dead letters of a RabbitMQ or generic broker's queues, from
/// [`Amqp10Queue::dead_letters`](crate::Amqp10Queue::dead_letters).
#[derive(Clone)]
pub struct Amqp10DeadLetters {
    supervisor: Arc<Supervisor>,
}

impl Amqp10DeadLetters {
    pub(crate) fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }
}

impl fmt::Debug for Amqp10DeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Amqp10DeadLetters")
            .field("url", &self.supervisor.url())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl DeadLetters for Amqp10DeadLetters {
    /// Up to `limit` messages of `<queue>.dead-letter`, read and handed
    /// back (see the module docs). The ids are the messages'
    /// `message-id`s; the reason is dtask's (`dtask-dead-letter-reason`).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad queue name; a backend error.
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        topology::check_name(queue)?;
        list(&self.supervisor, queue, limit).await
    }

    /// Takes the messages of `<queue>.dead-letter` in order and accepts the
    /// one whose `message-id` is `id`; the others stay.
    ///
    /// # Errors
    /// As [`dead_letters`](Self::dead_letters).
    async fn remove_dead_letter(&self, queue: &str, id: &str) -> Result<bool> {
        topology::check_name(queue)?;
        remove(&self.supervisor, queue, id).await
    }
}

/// Up to `limit` dead letters of `queue`, oldest first, left in place.
async fn list(supervisor: &Supervisor, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
    let mut letters = Vec::new();
    scan(supervisor, queue, |received| {
        if letters.len() < limit {
            letters.push(dead_letter(received));
        }
        false
    })
    .await?;
    Ok(letters)
}

/// Removes the dead letter whose message id is `id`; `false` when there is
/// none.
async fn remove(supervisor: &Supervisor, queue: &str, id: &str) -> Result<bool> {
    let mut found = false;
    scan(supervisor, queue, |received| {
        let take = !found && message::message_id(received).as_deref() == Some(id);
        found |= take;
        take
    })
    .await?;
    Ok(found)
}

/// Shows `visit` every message of `queue`'s dead-letter queue, in order,
/// accepting (removing) those it answers `true` for; the others stay.
async fn scan(supervisor: &Supervisor, queue: &str, mut visit: impl FnMut(&Received) -> bool) -> Result<()> {
    let config = supervisor.config();
    let address = topology::dead_letter_address(config.broker, queue);
    let marker = uuid::Uuid::new_v4().to_string();
    let mut marker_message = Message::builder()
        .properties(Properties {
            message_id: Some(MessageId::String(marker.clone())),
            ..Properties::default()
        })
        .data(Data(Binary::from(Vec::new())))
        .build();
    message::set_property(&mut marker_message, MARKER_PROPERTY, marker.clone());
    publisher::publish_message(supervisor, &address, &marker_message).await?;

    let connection = supervisor.connection(deadline_after(config.reconnect_timeout)).await?;
    connection.authorize(&address).await?;
    let mut session = connection.begin_session().await?;
    let failed = |reason: String| -> Error {
        Amqp10Error::Attach {
            address: address.clone(),
            reason,
        }
        .into()
    };
    let source = Source::builder()
        .address(address.clone())
        .durable(topology::durability(config.broker))
        .build();
    let attached = Receiver::builder()
        .name(format!("dtask-dead-letters-{}", uuid::Uuid::new_v4().simple()))
        .source(source)
        .credit_mode(CreditMode::Manual)
        .auto_accept(false)
        .attach(&mut session)
        .await;
    let result = match attached {
        Ok(mut receiver) => {
            let read = read_until_marker(&mut receiver, &marker, config.outcome_timeout, &mut visit).await;
            let _ = receiver.close().await;
            read.map_err(failed)
        }
        Err(error) => Err(failed(error.to_string())),
    };
    // Ending the session hands back every message it did not accept.
    let _ = session.end().await;
    result
}

async fn read_until_marker(
    receiver: &mut Receiver,
    marker: &str,
    patience: std::time::Duration,
    visit: &mut impl FnMut(&Received) -> bool,
) -> std::result::Result<(), String> {
    // Credit is granted again only once used up: a grant made while
    // deliveries are in flight makes RabbitMQ send more than it allows.
    let mut granted = 0u32;
    loop {
        if granted == 0 {
            receiver.set_credit(CREDIT).await.map_err(|e| e.to_string())?;
            granted = CREDIT;
        }
        let delivery = match tokio::time::timeout(patience, receiver.recv::<Body<Value>>()).await {
            Ok(delivery) => delivery.map_err(|e| e.to_string())?,
            Err(_) => return Err(format!("the listing's marker did not come back within {patience:?}")),
        };
        granted -= 1;
        let received = delivery.message();
        match message::property(received, MARKER_PROPERTY) {
            Some(found) if found == marker => {
                receiver.accept(&delivery).await.map_err(|e| e.to_string())?;
                return Ok(());
            }
            // Another listing's marker: left for it.
            Some(_) => {}
            None => {
                if visit(received) {
                    receiver.accept(&delivery).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
}

/// The dead letter a message of the dead-letter queue is.
fn dead_letter(received: &Received) -> DeadLetter {
    let reason = message::property(received, message::DEAD_LETTER_REASON_PROPERTY)
        .map(str::to_owned)
        .or_else(|| {
            let reason = message::property(received, message::SERVICE_BUS_REASON)?;
            Some(match message::property(received, message::SERVICE_BUS_DESCRIPTION) {
                Some(description) => format!("{reason}: {description}"),
                None => reason.to_owned(),
            })
        })
        .unwrap_or_else(|| "dead-lettered".to_owned());
    let deliveries = message::property(received, message::DEAD_LETTER_DELIVERIES_PROPERTY)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| message::delivery_count(received, message::Redelivery::HeaderCount).saturating_sub(1));
    DeadLetter {
        id: message::message_id(received).unwrap_or_default(),
        message: message::decode(received).ok(),
        deliveries,
        reason,
    }
}
