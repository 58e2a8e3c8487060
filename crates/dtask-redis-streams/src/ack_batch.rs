//! [`AckBatcher`]: group commit of acks. Acks that arrive while one batch
//! is on its way go out together, as one `XACK` (and one `XDEL`) naming all
//! their entries; each ack still returns only once Redis has confirmed it.

use std::sync::Arc;

use redis::RedisResult;
use tokio::sync::{mpsc, oneshot};

use crate::queue::Shared;
use crate::stats::Counter;

/// The most entries one batch names.
const MAX_BATCH: usize = 512;

type Request = (String, oneshot::Sender<RedisResult<()>>);

/// Sends the acks of one stream's entries in batches.
pub(crate) struct AckBatcher {
    requests: mpsc::UnboundedSender<Request>,
}

impl AckBatcher {
    /// A batcher for `stream`, whose task ends when the batcher is dropped.
    pub(crate) fn spawn(shared: Arc<Shared>, stream: String) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(shared, stream, receiver));
        Self { requests }
    }

    /// Acks entry `id`: returns once Redis has confirmed it.
    ///
    /// # Cancel safety
    /// Once called, the ack goes out even if the future is dropped.
    pub(crate) async fn ack(&self, id: String) -> RedisResult<()> {
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

async fn run(shared: Arc<Shared>, stream: String, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::new();
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&stream)
            .arg(&shared.config.group)
            .arg(&ids)
            .ignore();
        if shared.config.delete_acked {
            pipe.cmd("XDEL").arg(&stream).arg(&ids).ignore();
        }
        let result = pipe.query_async::<()>(&mut shared.conn()).await;
        if result.is_ok() {
            shared.count(Counter::Acked, u64::try_from(batch.len()).unwrap_or(u64::MAX));
        }
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
}
