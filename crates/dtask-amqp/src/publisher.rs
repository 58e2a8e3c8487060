//! Publishing: one persistent message, confirmed by the broker, retried
//! across reconnections.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use dtask_core::infra::QueueMessage;
use dtask_core::{Error, Result};
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, ErrorKind, PublisherConfirm};
use tokio::time::Instant;

use crate::config::{backoff, deadline_after};
use crate::error::{AmqpError, client};
use crate::session::Session;
use crate::supervisor::Supervisor;
use crate::{message, topology};

/// How many times one publish is tried on a connection that stays up
/// (after a broken channel, which is then reopened, or a nack).
const MAX_ATTEMPTS_WHILE_CONNECTED: u32 = 5;

/// How one attempt ended, when it did not succeed.
enum Failure {
    /// The connection or the channel broke: try again.
    Broken(Error),
    /// The queue does not exist (deleted since it was declared): declare
    /// it again and try again.
    Unroutable,
    /// The broker refused the message (`basic.nack`): a full queue that
    /// rejects publishes, or a quorum queue that could not take it at that
    /// moment (its leader moving, say). Try again a few times, with
    /// backoff; the last refusal is the error.
    Refused(Error),
    /// The broker answered no, or not in time: give up.
    Fatal(Error),
}

/// Publishes `message` to `queue` and waits for the broker's confirmation,
/// waiting up to [`reconnect_timeout`](crate::AmqpConfig::reconnect_timeout)
/// for a lost connection to come back.
pub(crate) async fn publish(supervisor: &Supervisor, queue: &str, message: &QueueMessage) -> Result<()> {
    let (properties, body) = message::encode(message)?;
    publish_to(supervisor, queue, queue, &properties, &body).await
}

/// Publishes `body` to the queue named `target` (which `queue`'s topology
/// holds: the queue itself or its dead-letter queue), declaring that
/// topology first, and waits for the broker's confirmation, as
/// [`publish`] does.
pub(crate) async fn publish_to(
    supervisor: &Supervisor,
    queue: &str,
    target: &str,
    properties: &BasicProperties,
    body: &Bytes,
) -> Result<()> {
    let name = topology::queue_name(target)?;
    let config = supervisor.config();
    let deadline = deadline_after(config.reconnect_timeout);
    let (mut broken, mut unroutable) = (0u32, 0u32);
    loop {
        let session = supervisor.session(deadline).await?;
        let attempt = async {
            let sent = send(supervisor, &session, queue, &name, properties, body).await?;
            confirmed(&session, queue, sent).await
        };
        let error = match attempt.await {
            Ok(()) => return Ok(()),
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Unroutable) => {
                session.forget(queue);
                unroutable += 1;
                if unroutable > 1 {
                    return Err(AmqpError::Unroutable {
                        queue: queue.to_owned(),
                    }
                    .into());
                }
                continue;
            }
            Err(Failure::Refused(error)) => error,
            Err(Failure::Broken(error)) => {
                supervisor.nudge();
                error
            }
        };
        broken += 1;
        if Instant::now() >= deadline || (session.is_connected() && broken >= MAX_ATTEMPTS_WHILE_CONNECTED) {
            return Err(error);
        }
        tracing::debug!(queue, %error, attempt = broken, "publishing failed; trying again");
        tokio::time::sleep(backoff(config, broken - 1).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// A message sent, its confirmation awaited until `deadline`.
struct Sent {
    confirm: Confirm,
    deadline: Instant,
    timeout: std::time::Duration,
}

/// Declares `queue`'s topology and sends the message, without waiting for
/// its confirmation. The attempt's deadline covers declaring and sending
/// too: a connection blocked by the broker (memory or disk alarm) holds
/// the message back, and a connection that broke under a request may
/// never answer it.
async fn send(
    supervisor: &Supervisor,
    session: &Session,
    queue: &str,
    name: &ShortString,
    properties: &BasicProperties,
    body: &Bytes,
) -> Result<Sent, Failure> {
    let config = supervisor.config();
    let timeout = config.confirm_timeout;
    let deadline = deadline_after(timeout);
    let timed_out = || Failure::Fatal(timed_out_error(queue, timeout));
    let lost = || Failure::Broken(timed_out_error(queue, timeout));
    match tokio::time::timeout_at(deadline, session.declare(queue, config.max_deliveries)).await {
        Ok(Ok(())) => {}
        // A refusal on a live connection is the broker's answer.
        Ok(Err(error)) if session.is_connected() => return Err(Failure::Fatal(error)),
        Ok(Err(error)) => return Err(Failure::Broken(error)),
        Err(_) if session.is_connected() => return Err(timed_out()),
        Err(_) => return Err(lost()),
    }
    let channel = match tokio::time::timeout_at(deadline, session.publisher()).await {
        Ok(channel) => channel.map_err(|e| Failure::Broken(client(e)))?,
        Err(_) => return Err(lost()),
    };
    let options = BasicPublishOptions {
        // Returned, rather than silently dropped, when the queue is gone.
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let sending = channel.basic_publish(ShortString::from(""), name.clone(), options, body, properties.clone());
    match tokio::time::timeout_at(deadline, sending).await {
        Ok(Ok(confirm)) => Ok(Sent {
            confirm: Confirm(Some(confirm)),
            deadline,
            timeout,
        }),
        Ok(Err(error)) => Err(Failure::Broken(client(error))),
        Err(_) => Err(timed_out()),
    }
}

/// Waits for the broker's confirmation of a message [`send`] sent.
async fn confirmed(session: &Session, queue: &str, sent: Sent) -> Result<(), Failure> {
    let Sent {
        confirm,
        deadline,
        timeout,
    } = sent;
    match tokio::time::timeout_at(deadline, confirm).await {
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(_)))) => Err(Failure::Unroutable),
        Ok(Ok(Confirmation::Nack(_))) => Err(Failure::Refused(
            AmqpError::Nacked {
                queue: queue.to_owned(),
            }
            .into(),
        )),
        // Every publisher channel is in confirm mode: only a channel that
        // the broker replaced under us can answer this.
        Ok(Ok(Confirmation::NotRequested)) => Err(Failure::Broken(Error::backend(
            crate::error::BACKEND,
            "the publisher channel is not in confirm mode",
        ))),
        Ok(Err(error)) => Err(Failure::Broken(client(error))),
        // A connection lost before the confirmation: send it again.
        Err(_) if !session.is_connected() => Err(Failure::Broken(timed_out_error(queue, timeout))),
        Err(_) => Err(Failure::Fatal(timed_out_error(queue, timeout))),
    }
}

/// Publishes `messages` to `queue`: sends them all, in order, then waits
/// for their confirmations together, so the batch costs one round trip to
/// the broker. A message that could not be sent or confirmed that way (a
/// connection that broke, a queue deleted meanwhile, a nack) is published
/// again on its own, as [`publish`] does.
pub(crate) async fn publish_many(supervisor: &Supervisor, queue: &str, messages: &[QueueMessage]) -> Vec<Result<()>> {
    let mut outcomes: Vec<Option<Result<()>>> = Vec::with_capacity(messages.len());
    let deadline = deadline_after(supervisor.config().reconnect_timeout);
    if let (Ok(name), Ok(session)) = (topology::queue_name(queue), supervisor.session(deadline).await) {
        let mut sent = Vec::with_capacity(messages.len());
        for message in messages {
            sent.push(match message::encode(message) {
                Ok((properties, body)) => Some(send(supervisor, &session, queue, &name, &properties, &body).await),
                // Refused again, with its reason, below.
                Err(_) => None,
            });
        }
        let confirmations = sent.into_iter().map(|sent| async {
            match sent {
                Some(Ok(sent)) => Some(confirmed(&session, queue, sent).await),
                Some(Err(failure)) => Some(Err(failure)),
                None => None,
            }
        });
        for confirmation in futures::future::join_all(confirmations).await {
            outcomes.push(match confirmation {
                Some(Ok(())) => Some(Ok(())),
                Some(Err(Failure::Fatal(error))) => Some(Err(error)),
                Some(Err(Failure::Broken(_) | Failure::Refused(_) | Failure::Unroutable)) | None => None,
            });
        }
    }
    outcomes.resize_with(messages.len(), || None);
    let mut results = Vec::with_capacity(messages.len());
    for (message, outcome) in messages.iter().zip(outcomes) {
        results.push(match outcome {
            Some(result) => result,
            None => publish(supervisor, queue, message).await,
        });
    }
    results
}

fn timed_out_error(queue: &str, timeout: std::time::Duration) -> Error {
    AmqpError::ConfirmTimeout {
        queue: queue.to_owned(),
        timeout,
    }
    .into()
}

/// A confirmation being awaited. One abandoned (a timeout, a cancelled
/// publish) is awaited in the background: dropped unresolved, lapin would
/// keep it until `wait_for_confirms`, which nobody calls on the shared
/// channel.
struct Confirm(Option<PublisherConfirm>);

impl Future for Confirm {
    type Output = lapin::Result<Confirmation>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(confirm) = self.0.as_mut() else {
            return Poll::Ready(Err(ErrorKind::FutureCompleted.into()));
        };
        let confirmation = ready!(Pin::new(confirm).poll(cx));
        self.0 = None;
        Poll::Ready(confirmation)
    }
}

impl Drop for Confirm {
    fn drop(&mut self) {
        if let Some(confirm) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = confirm.await;
            });
        }
    }
}
