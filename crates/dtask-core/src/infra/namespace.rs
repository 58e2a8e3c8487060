//! [`NamespacedQueue`]: a wrapper that prefixes every queue name, so that
//! several deployments (or test runs) can share one broker.

use std::fmt;

use async_trait::async_trait;

use super::{
    DeadLetter, DeadLetters, DeliveryStream, QueueConsumer, QueueDepth, QueueDepths, QueueMessage, QueuePublisher,
};
use crate::error::Result;

/// Wraps a queue backend and prefixes every queue name with
/// `{namespace}.`: task queue `file-processing` in namespace `staging` is
/// the broker's `staging.file-processing`.
///
/// ```
/// use dtask_core::infra::NamespacedQueue;
/// use dtask_core::memory::MemoryQueue;
///
/// let queue = NamespacedQueue::new("staging", MemoryQueue::new());
/// assert_eq!(queue.queue_name("file-processing"), "staging.file-processing");
/// ```
#[derive(Clone)]
pub struct NamespacedQueue<Q> {
    namespace: String,
    inner: Q,
}

impl<Q> NamespacedQueue<Q> {
    /// Prefixes `inner`'s queue names with `namespace`.
    pub fn new(namespace: impl Into<String>, inner: Q) -> Self {
        Self {
            namespace: namespace.into(),
            inner,
        }
    }

    /// The broker's name of task queue `queue`.
    pub fn queue_name(&self, queue: &str) -> String {
        format!("{}.{queue}", self.namespace)
    }
}

impl<Q> fmt::Debug for NamespacedQueue<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespacedQueue")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<Q: QueuePublisher> QueuePublisher for NamespacedQueue<Q> {
    async fn publish(&self, queue: &str, message: QueueMessage) -> Result<()> {
        self.inner.publish(&self.queue_name(queue), message).await
    }

    async fn publish_many(&self, queue: &str, messages: Vec<QueueMessage>) -> Vec<Result<()>> {
        self.inner.publish_many(&self.queue_name(queue), messages).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

#[async_trait]
impl<Q: QueueConsumer> QueueConsumer for NamespacedQueue<Q> {
    async fn consume(&self, queue: &str) -> Result<DeliveryStream> {
        self.inner.consume(&self.queue_name(queue)).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

#[async_trait]
impl<Q: DeadLetters> DeadLetters for NamespacedQueue<Q> {
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(&self.queue_name(queue), limit).await
    }

    async fn remove_dead_letter(&self, queue: &str, id: &str) -> Result<bool> {
        self.inner.remove_dead_letter(&self.queue_name(queue), id).await
    }
}

#[async_trait]
impl<Q: QueueDepths> QueueDepths for NamespacedQueue<Q> {
    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        self.inner.depth(&self.queue_name(queue)).await
    }
}
