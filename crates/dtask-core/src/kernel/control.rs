//! Stopping a running saga: the task's cancellation token and the reason
//! it fired.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

/// Why a saga was asked to stop before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Its client cancelled it: compensate, end as cancelled.
    Cancelled,
    /// Its timeout elapsed: compensate, end as compensated.
    TimedOut,
    /// Stop without settling and leave the task for redelivery: this
    /// worker lost its lock or was fenced out (the new holder carries on),
    /// the saga state could not be saved, or the host is shutting down and
    /// its grace period is over (the task is handed back; see
    /// [`RunControl::hand_back`]).
    Interrupted,
}

/// The token every step of a task derives its own from, and why it fired.
#[derive(Debug, Default)]
pub(crate) struct RunControl {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl RunControl {
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Asks the saga to stop. The first reason given wins.
    pub(crate) fn stop(&self, reason: StopReason) {
        let mut current = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_none() {
            *current = Some(reason);
        }
        drop(current);
        self.token.cancel();
    }

    /// Stops the run without settling it, because the host is shutting
    /// down: the running step's token fires, and the phase ends
    /// interrupted at once (no compensation), so the worker hands the task
    /// back for another worker to resume from its last snapshot, as after
    /// a lost lock.
    pub(crate) fn hand_back(&self) {
        self.stop(StopReason::Interrupted);
    }

    pub(crate) fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}
