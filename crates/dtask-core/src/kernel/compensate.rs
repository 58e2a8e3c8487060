//! Compensation: undoing completed steps in reverse order of completion.

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Halted, SagaRun, spans};
use crate::event::{CompensationReason, EventKind};
use crate::progress::StepStatus;
use crate::task::{StepError, Task};

impl<T: Task> SagaRun<'_, T> {
    /// Undoes every completed, compensable step, the last completed first.
    /// Skipped and failed steps are left alone. A step whose compensation
    /// keeps failing is recorded as such and the others are still undone.
    /// Returns the compensation failures.
    ///
    /// # Errors
    /// [`Halted`] when a compensation's outcome could not be saved: the
    /// others are left to the worker that resumes the task.
    pub(super) async fn compensate(&mut self, reason: CompensationReason) -> Result<Vec<String>, Halted> {
        self.recorder.record(EventKind::Compensating { reason }).await;
        let mut completed: Vec<(u32, usize)> = self.recorder.with(|p| {
            p.steps
                .iter()
                .enumerate()
                .filter(|(i, s)| s.status == StepStatus::Completed && self.def.steps[*i].compensable)
                .map(|(i, s)| (s.completion_order.unwrap_or(0), i))
                .collect()
        });
        completed.sort_unstable_by(|a, b| b.cmp(a));
        let mut failures = Vec::new();
        for (_, index) in completed {
            if let Err(error) = self.compensate_one(index).await? {
                failures.push(format!("`{}`: {error}", self.def.steps[index].name));
            }
        }
        Ok(failures)
    }

    /// Undoes one step, retrying as its retry policy says. Compensation runs
    /// under a fresh token: the task's has usually fired already. Returns
    /// how the compensation ended, once its outcome is saved.
    ///
    /// # Errors
    /// [`Halted`] when its outcome could not be saved.
    pub(super) async fn compensate_one(&self, index: usize) -> Result<Result<(), StepError>, Halted> {
        let step = &self.def.steps[index];
        let budget = step.retry.max_retries + 1;
        let env = self.env();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.recorder
                .record(EventKind::StepCompensating {
                    step: env.step_ref(index),
                    attempt,
                })
                .await;
            let (cx, _reports) = env.context(index, attempt, CancellationToken::new());
            let work = async {
                if let Some(interceptor) = &self.rt.interceptor {
                    interceptor
                        .before_compensation(self.def.name, step.name, attempt)
                        .await?;
                }
                self.task.compensate_step(index, &cx, &self.request, &self.data).await
            };
            let limit = self.rt.settings.compensation_timeout;
            let span = self.rt.compensation_span(self.def, self.task_id, index, attempt);
            let result = match tokio::time::timeout(limit, work).instrument(span.clone()).await {
                Ok(result) => result,
                Err(_) => {
                    cx.cancellation_token().cancel();
                    Err(StepError::timed_out(limit))
                }
            };
            spans::end_attempt(&span, &result, "Compensated");
            let metrics = self.rt.metrics.task(self.def.name).and_then(|m| m.step(index));
            match result {
                Ok(()) => {
                    metrics.inspect(|m| m.compensation(true));
                    self.settle(EventKind::StepCompensated {
                        step: env.step_ref(index),
                    })
                    .await?;
                    return Ok(Ok(()));
                }
                Err(error) if attempt < budget => {
                    tracing::warn!(task_id = %self.task_id, step = step.name, attempt, %error, "compensation failed; retrying");
                    tokio::time::sleep(step.retry.delay(attempt, rand::random::<f64>())).await;
                }
                Err(error) => {
                    metrics.inspect(|m| m.compensation(false));
                    self.settle(EventKind::StepCompensationFailed {
                        step: env.step_ref(index),
                        error: error.to_string(),
                    })
                    .await?;
                    return Ok(Err(error));
                }
            }
        }
    }
}
