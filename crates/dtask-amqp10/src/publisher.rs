//! Publishing: one durable message, sent unsettled, done only once the
//! broker answers `accepted`; retried across reconnections.

use std::time::Duration;

use dtask_core::infra::QueueMessage;
use dtask_core::{Error, Result};
use fe2o3_amqp::link::delivery::DeliveryFut;
use fe2o3_amqp::link::{SendError, delivery::Sendable};
use fe2o3_amqp::types::messaging::{Data, Message, Outcome};
use tokio::time::Instant;

use crate::config::{backoff, deadline_after};
use crate::connection::Connection;
use crate::error::Amqp10Error;
use crate::message;
use crate::supervisor::Supervisor;

/// How many times one publish is tried on a connection that stays up
/// (after a broken link, which is then attached again, or a `released`).
const MAX_ATTEMPTS_WHILE_CONNECTED: u32 = 5;

/// How one attempt ended, when it did not succeed.
enum Failure {
    /// The link, session or connection broke (or the outcome never came
    /// on a connection that is gone): try again.
    Broken(Error),
    /// The broker did not take the message (`released`, `modified`): try
    /// again a few times.
    NotTaken(Error),
    /// The broker answered no (`rejected`), or not in time on a live
    /// connection: give up.
    Fatal(Error),
}

/// Publishes `message` to the node `address` and waits for `accepted`,
/// waiting up to [`reconnect_timeout`](crate::Amqp10Config::reconnect_timeout)
/// for a lost connection to come back.
pub(crate) async fn publish(supervisor: &Supervisor, address: &str, message: &QueueMessage) -> Result<()> {
    let encoded = message::encode(message)?;
    publish_message(supervisor, address, &encoded).await
}

/// Sends `message` to `address` until the broker accepts it, as
/// [`publish`] does.
pub(crate) async fn publish_message(supervisor: &Supervisor, address: &str, message: &Message<Data>) -> Result<()> {
    let config = supervisor.config();
    let deadline = deadline_after(config.reconnect_timeout);
    let mut failures = 0u32;
    loop {
        let connection = supervisor.connection(deadline).await?;
        let attempt = async {
            let sent = send(&connection, address, message, config.outcome_timeout).await?;
            outcome(&connection, address, sent, config.outcome_timeout).await
        };
        let error = match attempt.await {
            Ok(()) => return Ok(()),
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::NotTaken(error)) => error,
            Err(Failure::Broken(error)) => {
                connection.forget_sender(address);
                supervisor.nudge();
                error
            }
        };
        failures += 1;
        if Instant::now() >= deadline || (!connection.is_lost() && failures >= MAX_ATTEMPTS_WHILE_CONNECTED) {
            return Err(error);
        }
        tracing::debug!(address, %error, attempt = failures, "publishing failed; trying again");
        tokio::time::sleep(backoff(config, failures - 1).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// A message handed to the link, its outcome to come.
type Sent = DeliveryFut<Result<Outcome, SendError>>;

/// Takes the sender to `address` and hands it the message (unsettled),
/// without waiting for the outcome.
async fn send(
    connection: &Connection,
    address: &str,
    message: &Message<Data>,
    timeout: Duration,
) -> Result<Sent, Failure> {
    let sender = connection.sender(address).await.map_err(|error| {
        if connection.is_lost() {
            Failure::Broken(error.into())
        } else {
            // The broker refused the link on a live connection (or the
            // token): that is its answer.
            Failure::Fatal(error.into())
        }
    })?;
    let sendable = Sendable::builder().message(message.clone()).settled(false).build();
    let sending = async { sender.lock().await.send_batchable(sendable).await };
    tokio::select! {
        sent = tokio::time::timeout(timeout, sending) => match sent {
            Ok(Ok(sent)) => Ok(sent),
            Ok(Err(error)) => Err(Failure::Broken(send_error(address, &error))),
            // No link credit for that long (or a connection that broke
            // under the send): the sender is replaced.
            Err(_) => Err(Failure::Broken(timed_out(address, timeout))),
        },
        () = connection.lost() => Err(Failure::Broken(lost(address))),
    }
}

/// Waits for the broker's outcome of a message [`send`] handed over.
async fn outcome(connection: &Connection, address: &str, sent: Sent, timeout: Duration) -> Result<(), Failure> {
    let answer = tokio::select! {
        answer = tokio::time::timeout(timeout, sent) => answer,
        // The outcome will never come: send it again on the next connection.
        () = connection.lost() => return Err(Failure::Broken(lost(address))),
    };
    match answer {
        Ok(Ok(Outcome::Accepted(_))) => Ok(()),
        Ok(Ok(Outcome::Rejected(rejected))) => {
            let (condition, description) = match rejected.error {
                Some(error) => (format!("{:?}", error.condition), error.description),
                None => ("rejected".to_owned(), None),
            };
            Err(Failure::Fatal(
                Amqp10Error::Rejected {
                    address: address.to_owned(),
                    condition,
                    description,
                }
                .into(),
            ))
        }
        Ok(Ok(Outcome::Released(_))) => Err(Failure::NotTaken(not_taken(address, "released"))),
        Ok(Ok(Outcome::Modified(_))) => Err(Failure::NotTaken(not_taken(address, "modified"))),
        #[allow(unreachable_patterns)]
        Ok(Ok(_)) => Err(Failure::NotTaken(not_taken(address, "an unknown outcome"))),
        Ok(Err(error)) => Err(Failure::Broken(send_error(address, &error))),
        Err(_) if connection.is_lost() => Err(Failure::Broken(timed_out(address, timeout))),
        Err(_) => Err(Failure::Fatal(timed_out(address, timeout))),
    }
}

/// Publishes `messages` to `address`: hands them all to the link, in
/// order, then waits for their outcomes together (one round trip); a
/// message that did not go that way is published again on its own, as
/// [`publish`] does.
pub(crate) async fn publish_many(supervisor: &Supervisor, address: &str, messages: &[QueueMessage]) -> Vec<Result<()>> {
    let config = supervisor.config();
    let mut outcomes: Vec<Option<Result<()>>> = Vec::with_capacity(messages.len());
    let deadline = deadline_after(config.reconnect_timeout);
    if let Ok(connection) = supervisor.connection(deadline).await {
        let mut sent = Vec::with_capacity(messages.len());
        for message in messages {
            sent.push(match message::encode(message) {
                Ok(encoded) => Some(send(&connection, address, &encoded, config.outcome_timeout).await),
                // Refused again, with its reason, below.
                Err(_) => None,
            });
        }
        let answers = sent.into_iter().map(|sent| async {
            match sent {
                Some(Ok(sent)) => Some(outcome(&connection, address, sent, config.outcome_timeout).await),
                Some(Err(failure)) => Some(Err(failure)),
                None => None,
            }
        });
        for answer in futures::future::join_all(answers).await {
            outcomes.push(match answer {
                Some(Ok(())) => Some(Ok(())),
                Some(Err(Failure::Fatal(error))) => Some(Err(error)),
                Some(Err(Failure::Broken(_))) => {
                    connection.forget_sender(address);
                    None
                }
                Some(Err(Failure::NotTaken(_))) | None => None,
            });
        }
    }
    outcomes.resize_with(messages.len(), || None);
    let mut results = Vec::with_capacity(messages.len());
    for (message, outcome) in messages.iter().zip(outcomes) {
        results.push(match outcome {
            Some(result) => result,
            None => publish(supervisor, address, message).await,
        });
    }
    results
}

fn send_error(address: &str, error: &SendError) -> Error {
    Amqp10Error::Send {
        address: address.to_owned(),
        reason: error.to_string(),
    }
    .into()
}

fn lost(address: &str) -> Error {
    Amqp10Error::Send {
        address: address.to_owned(),
        reason: "the connection was lost before the broker's outcome".into(),
    }
    .into()
}

fn not_taken(address: &str, outcome: &'static str) -> Error {
    Amqp10Error::NotTaken {
        address: address.to_owned(),
        outcome,
    }
    .into()
}

fn timed_out(address: &str, timeout: Duration) -> Error {
    Amqp10Error::OutcomeTimeout {
        address: address.to_owned(),
        timeout,
    }
    .into()
}
