//! Idempotency keys of submissions: the same key submitted twice creates
//! one task.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::TaskId;

/// What a claimed key recorded: the task its first submission created and,
/// once that submission has been read whole, a fingerprint of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    /// The task the key's first submission created.
    pub task_id: TaskId,
    /// A digest of that submission; `None` while it is still being read.
    pub fingerprint: Option<String>,
}

/// Remembers idempotency keys for a while.
///
/// A submitter first [`claim`](Self::claim)s the key with the id it will
/// give the task. The first claim wins; every later claim gets the
/// winner's record. Once the submission has been read, the winner
/// [`finish`](Self::finish)es the key with a fingerprint of it, so a later
/// submission with the same key can be told apart from a different one;
/// if the submission fails before a task exists, it
/// [`release`](Self::release)s the key.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + fmt::Debug + 'static {
    /// Claims `key` for `task_id` for `ttl`. Returns `None` when the claim
    /// is ours, or the existing record.
    async fn claim(&self, key: &str, task_id: TaskId, ttl: Duration) -> Result<Option<IdempotencyRecord>>;

    /// Records the fingerprint of the submission that claimed `key`.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) when the key is not
    /// claimed (or has expired).
    async fn finish(&self, key: &str, fingerprint: &str) -> Result<()>;

    /// Forgets `key` (a no-op for an unknown key).
    async fn release(&self, key: &str) -> Result<()>;

    /// Checks that the backend answers (used by readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
