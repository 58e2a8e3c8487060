//! The trivial tasks the throughput sections run: three custom steps (or
//! one), each returning a small value, no files.

use dtask::prelude::*;
use serde::{Deserialize, Serialize};

/// The request of both tasks: a number.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Ping {
    /// Carried through the steps.
    pub(crate) n: u64,
}

/// The response of both tasks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Pong {
    /// What the last step returned.
    pub(crate) n: u64,
}

/// Three trivial steps, each adding one to the previous one's output.
#[dtask::task(
    name = "BenchThreeSteps",
    request = Ping,
    response = Pong,
    queue = "bench",
    max_retries = 0,
    timeout_secs = 300,
    mode = InProcess
)]
#[custom_step(First, order = 1, output = u64)]
#[custom_step(Second, order = 2, inputs(first), output = u64)]
#[custom_step(Third, order = 3, inputs(second), output = u64)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ThreeSteps;

impl three_steps::Steps for ThreeSteps {
    async fn first(&self, _cx: &StepContext, input: three_steps::FirstInput<'_>) -> Result<u64, StepError> {
        Ok(input.request.n + 1)
    }

    async fn second(&self, _cx: &StepContext, input: three_steps::SecondInput<'_>) -> Result<u64, StepError> {
        Ok(*input.first + 1)
    }

    async fn third(&self, _cx: &StepContext, input: three_steps::ThirdInput<'_>) -> Result<u64, StepError> {
        Ok(*input.second + 1)
    }

    fn response(&self, outputs: three_steps::Outputs<'_>) -> Result<Pong, StepError> {
        Ok(Pong { n: *outputs.third })
    }
}

/// One trivial step.
#[dtask::task(
    name = "BenchOneStep",
    request = Ping,
    response = Pong,
    queue = "bench",
    max_retries = 0,
    timeout_secs = 300,
    mode = InProcess
)]
#[custom_step(Only, order = 1, output = u64)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OneStep;

impl one_step::Steps for OneStep {
    async fn only(&self, _cx: &StepContext, input: one_step::OnlyInput<'_>) -> Result<u64, StepError> {
        Ok(input.request.n + 1)
    }

    fn response(&self, outputs: one_step::Outputs<'_>) -> Result<Pong, StepError> {
        Ok(Pong { n: *outputs.only })
    }
}

/// Which of the two tasks a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Steps {
    /// [`OneStep`].
    One,
    /// [`ThreeSteps`].
    Three,
}

impl Steps {
    /// "1-step" or "3-step".
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::One => "1-step",
            Self::Three => "3-step",
        }
    }
}
