//! Running one step: its attempts, their timeouts, the backoff between
//! them, the step's own progress reports and cooperative cancellation.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::recorder::Recorder;
use super::{Runtime, spans};
use crate::event::{EventKind, StepRef};
use crate::id::TaskId;
use crate::task::{DataUpdate, StepContext, StepError, StepErrorKind, Task, TaskDefinition};

/// What every step of one saga run shares.
pub(crate) struct StepEnv<'a, T: Task> {
    pub(crate) rt: &'a Runtime,
    pub(crate) task: &'a T,
    pub(crate) def: &'static TaskDefinition,
    pub(crate) task_id: TaskId,
    pub(crate) request: &'a T::Request,
    pub(crate) recorder: &'a Recorder<'a>,
    pub(crate) scratch_dir: PathBuf,
}

impl<T: Task> StepEnv<'_, T> {
    pub(crate) fn step_ref(&self, index: usize) -> StepRef {
        StepRef {
            index,
            name: self.def.steps[index].name,
        }
    }

    pub(crate) fn context(
        &self,
        index: usize,
        attempt: u32,
        token: CancellationToken,
    ) -> (StepContext, watch::Receiver<Option<crate::task::StepReport>>) {
        let (reports, receiver) = watch::channel(None);
        let cx = StepContext {
            task_id: self.task_id,
            task_name: self.def.name,
            step: self.step_ref(index),
            attempt,
            token,
            storage: Arc::clone(&self.rt.infra.storage),
            scratch_dir: self.scratch_dir.clone(),
            reports: Arc::new(reports),
        };
        (cx, receiver)
    }

    /// Runs step `index` until an attempt succeeds or its retry policy gives
    /// up. `parent` is the token the step's attempts derive theirs from
    /// (the task's, or a race member's).
    pub(crate) async fn run_step(
        &self,
        index: usize,
        data: &T::Data,
        prior_attempts: u32,
        parent: &CancellationToken,
    ) -> Result<DataUpdate<T::Data>, StepError> {
        let step = &self.def.steps[index];
        let policy = step.retry;
        let budget = policy.max_retries + 1;
        let mut attempt = prior_attempts;
        loop {
            attempt += 1;
            self.recorder
                .record(EventKind::StepStarted {
                    step: self.step_ref(index),
                    attempt,
                    worker: self.rt.node.clone(),
                })
                .await;
            let token = parent.child_token();
            let (cx, reports) = self.context(index, attempt, token.clone());
            let work = async {
                if let Some(interceptor) = &self.rt.interceptor {
                    interceptor
                        .before_attempt(self.def.name, step.name, attempt, &token)
                        .await?;
                }
                self.task.run_step(index, &cx, self.request, data).await
            };
            let span = self.rt.attempt_span(self.def, self.task_id, index, attempt);
            let started = Instant::now();
            let result = self
                .supervise(index, work, &token, reports, step.timeout)
                .instrument(span.clone())
                .await;
            spans::end_attempt(&span, &result, "Completed");
            let metrics = self.rt.metrics.task(self.def.name).and_then(|m| m.step(index));
            if let Some(metrics) = metrics {
                metrics.attempt(result.as_ref().err().map(StepError::kind), started.elapsed());
            }
            let error = match result {
                Ok(update) => return Ok(update),
                Err(error) => error,
            };
            if parent.is_cancelled() && error.kind() == StepErrorKind::Cancelled {
                self.recorder
                    .record(EventKind::StepCancelled {
                        step: self.step_ref(index),
                    })
                    .await;
                return Err(error);
            }
            let retries_left = attempt < budget && error.is_retryable() && !parent.is_cancelled();
            let retry_in = retries_left.then(|| policy.delay(attempt, rand::random::<f64>()));
            if let (Some(metrics), Some(_)) = (metrics, retry_in) {
                metrics.retried();
            }
            self.recorder
                .record(EventKind::StepFailed {
                    step: self.step_ref(index),
                    attempt,
                    error: error.to_string(),
                    retry_in,
                })
                .await;
            match retry_in {
                None => return Err(error),
                Some(delay) => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = parent.cancelled() => return Err(StepError::cancelled()),
                    }
                }
            }
        }
    }

    /// Polls one attempt to its end: publishes its progress reports (at most
    /// one per `progress_interval`), enforces its timeout, and once its
    /// token fires gives it `cancel_grace` to stop on its own.
    async fn supervise(
        &self,
        index: usize,
        work: impl Future<Output = Result<DataUpdate<T::Data>, StepError>>,
        token: &CancellationToken,
        mut reports: watch::Receiver<Option<crate::task::StepReport>>,
        timeout: Option<Duration>,
    ) -> Result<DataUpdate<T::Data>, StepError> {
        let mut work = pin!(work);
        let settings = &self.rt.settings;
        let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut deadline = timeout.map_or(far_future, |t| Instant::now() + t);
        let mut timed_out = false;
        let mut grace_until: Option<Instant> = None;
        let mut next_report = Instant::now();
        let mut report_pending = false;
        loop {
            tokio::select! {
                biased;
                result = &mut work => {
                    return match result {
                        Err(_) if timed_out => Err(StepError::timed_out(timeout.unwrap_or_default())),
                        other => other,
                    };
                }
                () = token.cancelled(), if grace_until.is_none() => {
                    grace_until = Some(Instant::now() + settings.cancel_grace);
                }
                () = tokio::time::sleep_until(deadline), if !timed_out => {
                    timed_out = true;
                    token.cancel();
                    deadline = far_future;
                }
                () = tokio::time::sleep_until(grace_until.unwrap_or(far_future)), if grace_until.is_some() => {
                    return Err(if timed_out {
                        StepError::timed_out(timeout.unwrap_or_default())
                    } else {
                        StepError::cancelled()
                    });
                }
                changed = reports.changed(), if !report_pending => {
                    if changed.is_err() {
                        report_pending = true; // sender gone: stop listening
                        next_report = far_future;
                    } else if Instant::now() >= next_report {
                        self.publish_report(index, &mut reports).await;
                        next_report = Instant::now() + settings.progress_interval;
                    } else {
                        report_pending = true;
                    }
                }
                () = tokio::time::sleep_until(next_report), if report_pending && next_report < far_future => {
                    report_pending = false;
                    self.publish_report(index, &mut reports).await;
                    next_report = Instant::now() + settings.progress_interval;
                }
            }
        }
    }

    async fn publish_report(&self, index: usize, reports: &mut watch::Receiver<Option<crate::task::StepReport>>) {
        let report = reports.borrow_and_update().clone();
        if let Some(report) = report {
            self.recorder
                .record(EventKind::StepProgress {
                    step: self.step_ref(index),
                    fraction: report.fraction,
                    message: report.message,
                })
                .await;
        }
    }
}
