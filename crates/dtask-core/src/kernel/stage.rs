//! Running one stage: a single step, or the members of a parallel group
//! (all of them with `await_all`, the first to finish otherwise).

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::{Failure, Halted, SagaRun, StageError, StepEnv};
use crate::codec::{Codec, SagaStateSerializer};
use crate::event::{EventKind, StepRef};
use crate::task::{DataUpdate, Stage, StepError, StepErrorKind, Task};

impl<T: Task> SagaRun<'_, T> {
    /// Runs the members of `stage` that still have to run.
    pub(super) async fn run_stage(&mut self, stage: &Stage) -> Result<(), StageError> {
        let mut runnable = Vec::with_capacity(stage.steps.len());
        for &index in &stage.steps {
            if self.needs_run(index) && self.condition_holds(index).await? {
                runnable.push(index);
            }
        }
        match (runnable.as_slice(), stage.group) {
            ([], _) => Ok(()),
            ([index], None) => self.run_single(*index).await,
            (members, Some(group)) if self.rt.settings.group_distribution.distributes(&self.def.groups[group]) => {
                self.run_distributed(members).await
            }
            (_, group) => {
                let await_all = group.is_none_or(|g| self.def.groups[g].await_all);
                self.run_group(&runnable, await_all).await
            }
        }
    }

    /// Evaluates the step's condition, if any; records (and saves) a skip
    /// when it does not hold.
    async fn condition_holds(&self, index: usize) -> Result<bool, Halted> {
        let Some(condition) = T::evaluate_condition(index, &self.request, &self.data) else {
            return Ok(true);
        };
        let step = self.step_ref(index);
        let (name, holds, expression) = (step.name, condition.holds, &condition.expression);
        tracing::event!(
            target: "dtask",
            tracing::Level::DEBUG,
            step.name = name,
            condition.holds = holds,
            condition.expression = %expression,
            "ConditionEvaluated"
        );
        if condition.holds {
            self.recorder.record(EventKind::ConditionHeld { step, condition }).await;
            Ok(true)
        } else {
            self.settle(EventKind::StepSkipped { step, condition }).await?;
            Ok(false)
        }
    }

    pub(super) fn step_ref(&self, index: usize) -> StepRef {
        StepRef {
            index,
            name: self.def.steps[index].name,
        }
    }

    pub(super) fn prior_attempts(&self, index: usize) -> u32 {
        self.recorder.with(|p| p.steps[index].attempts)
    }

    pub(super) async fn complete_step(&self, index: usize) -> Result<(), Halted> {
        let kind = EventKind::StepCompleted {
            step: self.step_ref(index),
            attempt: self.prior_attempts(index),
        };
        if self.def.steps[index].group.is_none() {
            // The next event (the next step's start, or the end) follows at
            // once and writes this one with it. A group member's completion
            // is written at once: its siblings may run for long.
            self.settle_folded(kind).await
        } else {
            self.settle(kind).await
        }
    }

    /// The codec a step's output must get through, when the host
    /// serializes: a step whose data a broker could not carry fails at once
    /// (in tests, rather than in production), and its output is not kept,
    /// so the saga state stays one that can be saved.
    pub(super) fn output_check(&self) -> Option<Codec> {
        self.rt.serialize.then(|| self.rt.codec::<T>())
    }

    /// Records that step `index`'s output cannot be serialized; the failure
    /// to end the stage with.
    pub(super) async fn unserializable(&self, index: usize, error: &crate::Error) -> Failure {
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
        Failure {
            step: Some(index),
            error,
        }
    }

    async fn run_single(&mut self, index: usize) -> Result<(), StageError> {
        let prior = self.prior_attempts(index);
        let token = self.control.token().clone();
        let result = self.env().run_step(index, &self.data, prior, &token).await;
        match result {
            Ok(update) => {
                let check = self.output_check();
                if let Err(error) = apply_output::<T>(&mut self.data, update, check) {
                    return Err(StageError::Failed(self.unserializable(index, &error).await));
                }
                Ok(self.complete_step(index).await?)
            }
            Err(error) => Err(StageError::Failed(Failure {
                step: Some(index),
                error,
            })),
        }
    }

    /// Runs the members concurrently against a copy of the data, applying
    /// each member's output as it completes. With `await_all`, a failure
    /// cancels the other members and fails the stage; otherwise the first
    /// member to complete wins, the others are cancelled, and a loser that
    /// completed anyway is compensated at once. A halt (a save that failed
    /// for good) cancels every member and ends the stage once they stopped.
    async fn run_group(&mut self, members: &[usize], await_all: bool) -> Result<(), StageError> {
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
        let mut halted: Option<Halted> = None;
        let mut winner: Option<usize> = None;
        let mut losers = Vec::new();
        while let Some((index, result)) = running.next().await {
            if halted.is_some() {
                continue; // draining the members the halt cancelled
            }
            match result {
                Ok(update) => {
                    let check = self.output_check();
                    if let Err(error) = apply_output::<T>(&mut self.data, update, check) {
                        tokens.iter().for_each(CancellationToken::cancel);
                        let unserializable = self.unserializable(index, &error).await;
                        failure.get_or_insert(unserializable);
                        continue;
                    }
                    if let Err(halt) = self.complete_step(index).await {
                        tokens.iter().for_each(CancellationToken::cancel);
                        halted = Some(halt);
                        continue;
                    }
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
        if let Some(halt) = halted {
            return Err(halt.into());
        }
        for index in losers {
            if self.compensate_one(index).await?.is_ok() {
                self.recorder
                    .record(EventKind::StepCancelled {
                        step: self.step_ref(index),
                    })
                    .await;
            }
        }
        match (await_all, winner, failure) {
            (true, _, Some(failure)) | (false, None, Some(failure)) => Err(StageError::Failed(failure)),
            _ => Ok(()),
        }
    }
}

/// Applies a step's output to `data`; with a `check`, only if the result
/// can be serialized (otherwise `data` is left as it was).
pub(super) fn apply_output<T: Task>(
    data: &mut T::Data,
    update: DataUpdate<T::Data>,
    check: Option<Codec>,
) -> Result<(), crate::Error> {
    let Some(codec) = check else {
        update(data);
        return Ok(());
    };
    let mut candidate = data.clone();
    update(&mut candidate);
    codec.serialize(&candidate)?;
    *data = candidate;
    Ok(())
}
