//! Retrying a backend call that failed: the pause between attempts, and
//! when to give up.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// The first pause between two attempts.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two attempts.
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// Calls `call` until it succeeds, retrying a failure after a pause that
/// doubles from 50 ms to 2 s, for at most `budget`. `retryable` says which
/// errors are worth another attempt; `on_retry` is told of each one
/// retried (to log it).
///
/// # Errors
/// The last error, once it is not retryable or the budget is spent.
pub(crate) async fn with_backoff<R, F, Fut>(
    budget: Duration,
    mut call: F,
    retryable: impl Fn(&Error) -> bool,
    on_retry: impl Fn(&Error, Duration),
) -> Result<R>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R>>,
{
    let give_up_at = Instant::now() + budget;
    let mut pause = FIRST_PAUSE;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if !retryable(&error) || Instant::now() + pause >= give_up_at => return Err(error),
            Err(error) => {
                on_retry(&error, pause);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn flaky(calls: &AtomicU32, failures: u32) -> impl Future<Output = Result<u32>> + '_ {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n <= failures {
                Err(Error::backend("test", "down"))
            } else {
                Ok(n)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_retried_until_the_call_succeeds() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let result = with_backoff(Duration::from_secs(10), || flaky(&calls, 3), |_| true, |_, _| {}).await;
        assert_eq!(result.unwrap(), 4);
        // 50 + 100 + 200 ms of pauses.
        assert_eq!(started.elapsed(), Duration::from_millis(350));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_the_retries_and_the_last_error_is_returned() {
        let calls = AtomicU32::new(0);
        let result = with_backoff(Duration::from_secs(1), || flaky(&calls, u32::MAX), |_| true, |_, _| {}).await;
        assert!(matches!(result, Err(Error::Backend { .. })));
        // 50 + 100 + 200 + 400 ms fit in 1 s; the next pause (800 ms) does not.
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_that_is_not_retryable_is_returned_at_once() {
        let calls = AtomicU32::new(0);
        let result = with_backoff(
            Duration::from_secs(10),
            || flaky(&calls, u32::MAX),
            |e| !matches!(e, Error::Backend { .. }),
            |_, _| {},
        )
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
