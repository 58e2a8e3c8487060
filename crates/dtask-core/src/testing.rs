//! The test host: one line builds an in-process host for a task, records
//! every event, exposes the in-memory infrastructure for assertions, and
//! injects faults into chosen steps.
//!
//! ```text
//! let host = TestHost::new(CreateZipFromFiles::default());
//! host.inject("CreateZipArchive", Fault::FailTimes(2));
//! let outcome = host.run::<CreateZipFromFiles>(request).await?;
//! assert_eq!(outcome.status(), TaskStatus::Completed);
//! assert_eq!(outcome.progress.steps[1].attempts, 3);
//! ```
//!
//! The test host serializes every hand-off and snapshot (as a real broker
//! would), so a step whose data does not survive serialization fails in
//! tests, not in production.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::event::{EventKind, TaskEvent};
use crate::host::{Host, HostBuilder, StepInterceptor, TaskHandle, TaskOutcome};
use crate::id::TaskId;
use crate::infra::ObjectStore;
use crate::task::{Mode, StepError, Task};

/// A fault to inject into a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The first `n` attempts fail with a transient error.
    FailTimes(u32),
    /// Every attempt fails with a transient error.
    FailAlways,
    /// The first attempt fails with a permanent error.
    FailPermanently,
    /// Every attempt hangs until its token fires (cancellation, a step or
    /// task timeout), then reports cancellation.
    Hang,
    /// Every attempt waits this long (cancellably) before running.
    Delay(Duration),
    /// The first `n` compensation attempts fail.
    FailCompensationTimes(u32),
    /// Every compensation attempt fails.
    FailCompensationAlways,
}

/// The injected faults, shared by the test host and its interceptor.
#[derive(Debug, Default, Clone)]
struct FaultPlan {
    faults: Arc<Mutex<HashMap<&'static str, (Fault, u32)>>>,
}

impl FaultPlan {
    fn take(&self, step: &str) -> Option<(Fault, u32)> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let (fault, count) = faults.get_mut(step)?;
        *count += 1;
        Some((*fault, *count))
    }
}

#[async_trait]
impl StepInterceptor for FaultPlan {
    async fn before_attempt(
        &self,
        _task: &'static str,
        step: &'static str,
        _attempt: u32,
        token: &CancellationToken,
    ) -> Result<(), StepError> {
        let Some((fault, count)) = self.take(step) else {
            return Ok(());
        };
        match fault {
            Fault::FailTimes(n) if count <= n => Err(StepError::transient(format!("injected failure {count} of {n}"))),
            Fault::FailAlways => Err(StepError::transient("injected failure")),
            Fault::FailPermanently if count == 1 => Err(StepError::permanent("injected permanent failure")),
            Fault::Hang => {
                token.cancelled().await;
                Err(StepError::cancelled())
            }
            Fault::Delay(delay) => tokio::select! {
                () = tokio::time::sleep(delay) => Ok(()),
                () = token.cancelled() => Err(StepError::cancelled()),
            },
            _ => Ok(()),
        }
    }

    async fn before_compensation(
        &self,
        _task: &'static str,
        step: &'static str,
        attempt: u32,
    ) -> Result<(), StepError> {
        let faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        match faults.get(step).map(|f| f.0) {
            Some(Fault::FailCompensationTimes(n)) if attempt <= n => Err(StepError::transient(format!(
                "injected compensation failure {attempt} of {n}"
            ))),
            Some(Fault::FailCompensationAlways) => Err(StepError::transient("injected compensation failure")),
            _ => Ok(()),
        }
    }
}

/// An in-process host for tests. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct TestHost {
    host: Host,
    events: Arc<Mutex<Vec<TaskEvent>>>,
    faults: FaultPlan,
}

impl TestHost {
    /// An in-process host serving `task`, with every service in memory.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new<T: Task>(task: T) -> Self {
        Self::with(|builder| builder.register(task))
    }

    /// An in-process host configured by `configure` (register tasks there,
    /// override services, change settings). Serializes hand-offs and
    /// snapshots unless `configure` turns it off.
    ///
    /// # Panics
    /// Outside a tokio runtime, or when the configuration is invalid.
    pub fn with(configure: impl FnOnce(HostBuilder) -> HostBuilder) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let faults = FaultPlan::default();
        let recorded = Arc::clone(&events);
        let builder = Host::builder()
            .mode(Mode::InProcess)
            .serialize_in_process(true)
            .on_event(move |event| recorded.lock().unwrap_or_else(|e| e.into_inner()).push(event.clone()))
            .interceptor(faults.clone());
        let host = configure(builder).build().expect("a valid test host configuration");
        Self { host, events, faults }
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The object store, to inspect what steps stored.
    pub fn storage(&self) -> &Arc<dyn ObjectStore> {
        &self.host.infrastructure().storage
    }

    /// Injects `fault` into every later attempt of `step` (of any task).
    pub fn inject(&self, step: &'static str, fault: Fault) {
        self.faults
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(step, (fault, 0));
    }

    /// Removes the fault of `step`.
    pub fn heal(&self, step: &str) {
        self.faults
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(step);
    }

    /// Submits a task.
    ///
    /// # Errors
    /// As [`Host::submit`].
    pub async fn submit<T: Task>(&self, request: T::Request) -> Result<TaskHandle<T>> {
        self.host.submit::<T>(request).await
    }

    /// Submits a task and waits for its end.
    ///
    /// # Errors
    /// As [`Host::submit`].
    pub async fn run<T: Task>(&self, request: T::Request) -> Result<TaskOutcome<T::Response>> {
        self.submit::<T>(request).await?.wait().await
    }

    /// Every event of `task_id` so far, in order.
    pub fn events(&self, task_id: TaskId) -> Vec<TaskEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e.task_id == task_id)
            .cloned()
            .collect()
    }

    /// The events of `task_id` as short lines (`StepStarted CreateZipArchive
    /// #1`, `StepCompensated UploadSourceFiles`, `Completed`), for readable
    /// assertions. Progress reports are left out.
    pub fn timeline(&self, task_id: TaskId) -> Vec<String> {
        self.events(task_id).iter().filter_map(|e| describe(&e.kind)).collect()
    }
}

fn describe(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::Submitted => "Submitted".into(),
        EventKind::Started { host } => format!("Started {host}"),
        EventKind::HandedOff { queue } => format!("HandedOff {queue}"),
        EventKind::DependentsDecided { dependents } => {
            let each: Vec<String> = dependents
                .iter()
                .map(|d| format!("{}{}", d.task_name, if d.started { "" } else { " (not started)" }))
                .collect();
            format!("DependentsDecided {}", each.join(", "))
        }
        EventKind::StepStarted { step, attempt, .. } => format!("StepStarted {} #{attempt}", step.name),
        EventKind::StepProgress { .. } => return None,
        EventKind::StepCompleted { step, .. } => format!("StepCompleted {}", step.name),
        EventKind::StepFailed { step, retry_in, .. } => match retry_in {
            Some(delay) => format!("StepFailed {} retry in {} ms", step.name, delay.as_millis()),
            None => format!("StepFailed {}", step.name),
        },
        EventKind::StepSkipped { step, .. } => format!("StepSkipped {}", step.name),
        EventKind::ConditionHeld { step, .. } => format!("ConditionHeld {}", step.name),
        EventKind::StepCancelled { step } => format!("StepCancelled {}", step.name),
        EventKind::CancellationRequested => "CancellationRequested".into(),
        EventKind::Compensating { reason } => format!("Compensating {reason:?}"),
        EventKind::StepCompensating { step, attempt } => format!("StepCompensating {} #{attempt}", step.name),
        EventKind::StepCompensated { step } => format!("StepCompensated {}", step.name),
        EventKind::StepCompensationFailed { step, .. } => format!("StepCompensationFailed {}", step.name),
        EventKind::AwaitingDependents => "AwaitingDependents".into(),
        EventKind::Completed => "Completed".into(),
        EventKind::Failed { .. } => "Failed".into(),
        EventKind::Compensated { .. } => "Compensated".into(),
        EventKind::Cancelled => "Cancelled".into(),
        EventKind::CompensationFailed { .. } => "CompensationFailed".into(),
    })
}
