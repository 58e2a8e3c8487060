//! Retry policies: how many times a failed step is tried again, how long to
//! wait before each retry, and what happens when the retries run out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shape of the delay curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Backoff {
    /// Every retry waits `base`.
    Constant,
    /// Retry `n` waits `base × n`.
    Linear,
    /// Retry `n` waits `base × 2^(n-1)`: with a base of 200 ms, 200, 400,
    /// 800, 1600, 3200 ms.
    Exponential,
}

/// Randomisation of the delay, so that many failing tasks do not retry in
/// lock-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Jitter {
    /// The computed delay, exactly.
    #[default]
    None,
    /// Uniform between 0 and the computed delay.
    Full,
    /// Half the computed delay plus uniform between 0 and the other half.
    Equal,
}

/// What the saga does when a step has failed its last retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnExhausted {
    /// Undo the completed steps in reverse order, then end as
    /// [`Compensated`](crate::TaskStatus::Compensated).
    #[default]
    Compensate,
    /// End as [`Failed`](crate::TaskStatus::Failed) and leave the completed
    /// steps as they are.
    Fail,
}

/// A step's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: try once).
    pub max_retries: u32,
    /// The delay curve.
    pub backoff: Backoff,
    /// The delay unit.
    pub base_delay: Duration,
    /// No delay exceeds this.
    pub max_delay: Option<Duration>,
    /// Randomisation.
    pub jitter: Jitter,
    /// What happens when the retries run out.
    pub on_exhausted: OnExhausted,
}

impl RetryPolicy {
    /// The policy of a step that declares none: the task's `max_retries`,
    /// exponential from 1 s, capped at 60 s, compensating when exhausted.
    pub const fn task_default(max_retries: u32) -> Self {
        Self {
            max_retries,
            backoff: Backoff::Exponential,
            base_delay: Duration::from_secs(1),
            max_delay: Some(Duration::from_secs(60)),
            jitter: Jitter::None,
            on_exhausted: OnExhausted::Compensate,
        }
    }

    /// The delay before retry number `retry` (1 for the first retry),
    /// before jitter.
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        let retry = retry.max(1);
        let delay = match self.backoff {
            Backoff::Constant => self.base_delay,
            Backoff::Linear => self.base_delay.saturating_mul(retry),
            Backoff::Exponential => {
                let factor = 1u32.checked_shl(retry - 1).unwrap_or(u32::MAX);
                self.base_delay.saturating_mul(factor)
            }
        };
        match self.max_delay {
            Some(cap) => delay.min(cap),
            None => delay,
        }
    }

    /// The delay before retry number `retry`, jitter applied with `unit`, a
    /// number uniform in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let nominal = self.nominal_delay(retry);
        match self.jitter {
            Jitter::None => nominal,
            Jitter::Full => nominal.mul_f64(unit),
            Jitter::Equal => nominal / 2 + (nominal / 2).mul_f64(unit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, base_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            backoff,
            base_delay: Duration::from_millis(base_ms),
            max_delay: None,
            jitter: Jitter::None,
            on_exhausted: OnExhausted::Compensate,
        }
    }

    fn delays(policy: &RetryPolicy) -> Vec<u128> {
        (1..=policy.max_retries)
            .map(|n| policy.nominal_delay(n).as_millis())
            .collect()
    }

    #[test]
    fn exponential_doubles_from_the_base() {
        assert_eq!(delays(&policy(Backoff::Exponential, 200)), [200, 400, 800, 1600, 3200]);
    }

    #[test]
    fn linear_and_constant_curves() {
        assert_eq!(delays(&policy(Backoff::Linear, 100)), [100, 200, 300, 400, 500]);
        assert_eq!(delays(&policy(Backoff::Constant, 250)), [250; 5]);
    }

    #[test]
    fn cap_bounds_every_delay() {
        let mut capped = policy(Backoff::Exponential, 200);
        capped.max_delay = Some(Duration::from_millis(1000));
        assert_eq!(delays(&capped), [200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn huge_retry_numbers_saturate_instead_of_overflowing() {
        let p = policy(Backoff::Exponential, 1000);
        assert!(p.nominal_delay(200) >= Duration::from_secs(1000));
    }

    #[test]
    fn jitter_stays_inside_its_band() {
        let mut full = policy(Backoff::Constant, 1000);
        full.jitter = Jitter::Full;
        assert_eq!(full.delay(1, 0.0), Duration::ZERO);
        assert_eq!(full.delay(1, 0.5), Duration::from_millis(500));
        let mut equal = full;
        equal.jitter = Jitter::Equal;
        assert_eq!(equal.delay(1, 0.0), Duration::from_millis(500));
        assert!(equal.delay(1, 0.999) < Duration::from_millis(1000));
    }
}
