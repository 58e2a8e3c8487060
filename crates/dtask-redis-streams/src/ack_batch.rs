//! [`AckBatcher`]: group commit of acks. Acks that arrive while one batch
//! is on its way go out together, as one script call naming all their
//! entries; each ack still returns only once Redis has confirmed it, or
//! refused it because the entry is no longer this consumer's.

use std::collections::HashSet;
use std::sync::Arc;

use redis::RedisResult;
use tokio::sync::{mpsc, oneshot};

use crate::queue::Shared;
use crate::scripts::{self, QueueKeys};
use crate::stats::Counter;

/// The most entries one batch names.
const MAX_BATCH: usize = 512;

/// How one ack ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acked {
    /// The entry was acked and deleted.
    Done,
    /// The entry was not pending on this consumer (another one reclaimed
    /// it): nothing was done.
    NotOurs,
}

type Request = (String, oneshot::Sender<RedisResult<Acked>>);

/// Sends the acks of one stream's entries in batches.
pub(crate) struct AckBatcher {
    requests: mpsc::UnboundedSender<Request>,
}

impl AckBatcher {
    /// A batcher for the stream of `keys`, whose task ends when the batcher
    /// is dropped.
    pub(crate) fn spawn(shared: Arc<Shared>, keys: QueueKeys) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(shared, keys, receiver));
        Self { requests }
    }

    /// Acks entry `id` if it is still pending on this consumer: returns
    /// once Redis has answered.
    ///
    /// # Cancel safety
    /// Once called, the ack goes out even if the future is dropped.
    pub(crate) async fn ack(&self, id: String) -> RedisResult<Acked> {
        let (reply, answer) = oneshot::channel();
        if self.requests.send((id, reply)).is_err() {
            return Err(closed());
        }
        answer.await.unwrap_or_else(|_| Err(closed()))
    }
}

fn closed() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, "the ack batcher has stopped"))
}

async fn run(shared: Arc<Shared>, keys: QueueKeys, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::new();
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        let result = scripts::ack(&mut shared.conn(), &shared.config, &keys, &ids).await;
        let refused: HashSet<String> = match &result {
            Ok(refused) => refused.iter().cloned().collect(),
            Err(_) => HashSet::new(),
        };
        if result.is_ok() {
            let refused_count = u64::try_from(refused.len()).unwrap_or(u64::MAX);
            let acked = u64::try_from(batch.len()).unwrap_or(u64::MAX) - refused_count;
            shared.count(Counter::Acked, acked);
            shared.count(Counter::AcksRefused, refused_count);
        }
        for (id, reply) in batch.drain(..) {
            let outcome = match &result {
                Ok(_) if refused.contains(&id) => Ok(Acked::NotOurs),
                Ok(_) => Ok(Acked::Done),
                Err(error) => Err(error.clone()),
            };
            let _ = reply.send(outcome);
        }
    }
}
