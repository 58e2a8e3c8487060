//! Talking to every instance of a RedLock at once, and what to say when
//! too few of them answer.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::conn::{BACKEND, Commands, Connection};
use dtask_core::Error;
use futures::future::join_all;
use redis::RedisResult;

/// What one instance answered: a value, or why it did not (URL and error).
pub(crate) type Answer<T> = Result<T, String>;

/// Runs `call` on the instances at `indices` concurrently, each bounded by
/// `timeout`, and returns their answers in the same order.
pub(crate) async fn fan_out<'a, T, F, Fut>(
    instances: &'a [Connection],
    indices: impl IntoIterator<Item = usize>,
    timeout: Duration,
    call: F,
) -> Vec<(usize, Answer<T>)>
where
    F: Fn(Commands) -> Fut,
    Fut: Future<Output = RedisResult<T>> + 'a,
{
    let calls = indices.into_iter().map(|index| {
        let instance = &instances[index];
        let answer = call(instance.manager.clone());
        async move {
            let answer = match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(format!("{}: {error}", instance.url)),
                Err(_) => Err(format!("{}: no answer within {timeout:?}", instance.url)),
            };
            (index, answer)
        }
    });
    join_all(calls).await
}

/// Too few instances answered for a majority to decide.
#[derive(Debug)]
pub(crate) struct NoQuorum {
    /// What was being done: `acquire`, `extend`, `release`, `ping`.
    pub(crate) action: &'static str,
    /// The instances of the lock.
    pub(crate) instances: usize,
    /// The majority needed.
    pub(crate) quorum: usize,
    /// Why each failing instance failed.
    pub(crate) failures: Vec<String>,
}

impl fmt::Display for NoQuorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.instances == 1 {
            return write!(f, "lock {}: {}", self.action, self.failures.join("; "));
        }
        write!(
            f,
            "lock {}: {} of {} Redis instances failed and a majority of {} is needed: {}",
            self.action,
            self.failures.len(),
            self.instances,
            self.quorum,
            self.failures.join("; ")
        )
    }
}

impl std::error::Error for NoQuorum {}

impl NoQuorum {
    /// The [`Error::Backend`] carrying this.
    pub(crate) fn into_error(self) -> Error {
        Error::backend(BACKEND, self)
    }
}
