//! Running one stage: a single step, or the members of a parallel group
//! (all of them with `await_all`, the first to finish otherwise).

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::{Failure, SagaRun, StepEnv};
use crate::codec::SagaStateSerializer;
use crate::event::{EventKind, StepRef};
use crate::task::{Stage, StepError, StepErrorKind, Task};

impl<T: Task> SagaRun<'_, T> {
    /// Runs the members of `stage` that still have to run.
    pub(super) async fn run_stage(&mut self, stage: &Stage) -> Result<(), Failure> {
        let mut runnable = Vec::with_capacity(stage.steps.len());
        for &index in &stage.steps {
            if self.needs_run(index) && self.condition_holds(index).await {
                runnable.push(index);
            }
        }
        match (runnable.as_slice(), stage.group) {
            ([], _) => Ok(()),
            ([index], None) => self.run_single(*index).await,
            (_, group) => {
                let await_all = group.is_none_or(|g| self.def.groups[g].await_all);
                self.run_group(&runnable, await_all).await
            }
        }
    }

    /// Evaluates the step's condition, if any; records a skip when it does
    /// not hold.
    async fn condition_holds(&self, index: usize) -> bool {
        let Some(condition) = T::evaluate_condition(index, &self.request, &self.data) else {
            return true;
        };
        let step = self.step_ref(index);
        if condition.holds {
            self.recorder.record(EventKind::ConditionHeld { step, condition }).await;
            true
        } else {
            self.settle(EventKind::StepSkipped { step, condition }).await;
            false
        }
    }

    fn step_ref(&self, index: usize) -> StepRef {
        StepRef {
            index,
            name: self.def.steps[index].name,
        }
    }

    fn prior_attempts(&self, index: usize) -> u32 {
        self.recorder.with(|p| p.steps[index].attempts)
    }

    async fn complete_step(&self, index: usize) {
        let kind = EventKind::StepCompleted {
            step: self.step_ref(index),
            attempt: self.prior_attempts(index),
        };
        if self.def.steps[index].group.is_none() {
            // The next event (the next step's start, or the end) follows at
            // once and writes this one with it. A group member's completion
            // is written at once: its siblings may run for long.
            self.settle_folded(kind).await;
        } else {
            self.settle(kind).await;
        }
    }

    /// When the host serializes, checks that the data a step just produced
    /// can be: a step whose data a broker could not carry fails here, in
    /// tests, rather than in production.
    async fn check_serializable(&self, index: usize) -> Result<(), Failure> {
        if !self.rt.serialize {
            return Ok(());
        }
        let Err(error) = self.rt.codec::<T>().serialize(&self.data) else {
            return Ok(());
        };
        let error = StepError::permanent(format!(
            "the data of step `{}` cannot be serialized: {error}",
            self.def.steps[index].name
        ));
        self.recorder
            .record(EventKind::StepFailed {
                step: self.step_ref(index),
                attempt: self.prior_attempts(index),
                error: error.to_string(),
                retry_in: None,
            })
            .await;
        Err(Failure {
            step: Some(index),
            error,
        })
    }

    async fn run_single(&mut self, index: usize) -> Result<(), Failure> {
        let prior = self.prior_attempts(index);
        let token = self.control.token().clone();
        let result = self.env().run_step(index, &self.data, prior, &token).await;
        match result {
            Ok(update) => {
                update(&mut self.data);
                self.check_serializable(index).await?;
                self.complete_step(index).await;
                Ok(())
            }
            Err(error) => Err(Failure {
                step: Some(index),
                error,
            }),
        }
    }

    /// Runs the members concurrently against a copy of the data, applying
    /// each member's output as it completes. With `await_all`, a failure
    /// cancels the other members and fails the stage; otherwise the first
    /// member to complete wins, the others are cancelled, and a loser that
    /// completed anyway is compensated at once.
    async fn run_group(&mut self, members: &[usize], await_all: bool) -> Result<(), Failure> {
        let view = self.data.clone();
        let tokens: Vec<CancellationToken> = members.iter().map(|_| self.control.token().child_token()).collect();
        let priors: Vec<u32> = members.iter().map(|&i| self.prior_attempts(i)).collect();
        // Built field by field rather than with `self.env()`: the members
        // borrow these fields while completed members' data is written into
        // `self.data`.
        let env = StepEnv {
            rt: self.rt,
            task: self.task,
            def: self.def,
            task_id: self.task_id,
            request: &self.request,
            recorder: &self.recorder,
            scratch_dir: self.rt.scratch_dir(self.task_id),
        };
        let mut running: FuturesUnordered<_> = members
            .iter()
            .enumerate()
            .map(|(k, &index)| {
                let (env, view, token) = (&env, &view, &tokens[k]);
                let prior = priors[k];
                async move { (index, env.run_step(index, view, prior, token).await) }
            })
            .collect();
        let mut failure: Option<Failure> = None;
        let mut winner: Option<usize> = None;
        let mut losers = Vec::new();
        while let Some((index, result)) = running.next().await {
            match result {
                Ok(update) => {
                    update(&mut self.data);
                    if let Err(error) = self.check_serializable(index).await {
                        tokens.iter().for_each(CancellationToken::cancel);
                        failure.get_or_insert(error);
                        continue;
                    }
                    self.complete_step(index).await;
                    if await_all || winner.is_none() {
                        winner = Some(index);
                        if !await_all {
                            tokens.iter().for_each(CancellationToken::cancel);
                        }
                    } else {
                        losers.push(index);
                    }
                }
                Err(error) if error.kind() == StepErrorKind::Cancelled && (winner.is_some() || failure.is_some()) => {
                    // A sibling won or failed; run_step recorded the cancellation.
                }
                Err(error) => {
                    if await_all {
                        tokens.iter().for_each(CancellationToken::cancel);
                    }
                    if await_all && failure.is_some() {
                        continue;
                    }
                    failure = Some(Failure {
                        step: Some(index),
                        error,
                    });
                }
            }
        }
        drop(running);
        for index in losers {
            if self.compensate_one(index).await.is_ok() {
                self.recorder
                    .record(EventKind::StepCancelled {
                        step: self.step_ref(index),
                    })
                    .await;
            }
        }
        match (await_all, winner, failure) {
            (true, _, Some(failure)) | (false, None, Some(failure)) => Err(failure),
            _ => Ok(()),
        }
    }
}
