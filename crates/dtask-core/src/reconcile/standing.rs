//! What the reconciler knows of one task: whether its objects are kept, and
//! why, or orphaned, and why.

use std::fmt;

use bytes::Bytes;
use dtask_proto::prost::Message;
use dtask_proto::v1;
use serde::Deserialize;

use crate::codec::{Codec, Format, KeyRing, Payload, SagaStateSerializer, unseal};
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::infra::{ProgressTracker, SagaStateStore};
use crate::progress::TaskStatus;
use crate::task::Task;

/// Why the objects of a task are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrphanReason {
    /// The task ended without a result: failed, compensated, cancelled or
    /// compensation failed.
    Ended(TaskStatus),
    /// Neither the progress tracker nor the saga state store knows the
    /// task.
    Unknown,
    /// The task completed, and its objects are older than the retention of
    /// completed tasks' objects ([`Reconciler::with_completed_retention`](super::Reconciler::with_completed_retention)).
    Expired,
}

impl fmt::Display for OrphanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ended(status) => f.write_str(status.as_str()),
            Self::Unknown => f.write_str("unknown task"),
            Self::Expired => f.write_str("completed, past the retention"),
        }
    }
}

/// Why the objects of a known task are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeepReason {
    /// Pending, running, queued, compensating or awaiting its dependents.
    Live,
    /// Completed: its objects are its results.
    Completed,
    /// Its progress or saga state exists but could not be read.
    Unreadable,
}

/// The reconciler's judgement of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    Keep(KeepReason),
    Orphaned(OrphanReason),
}

impl Standing {
    /// The judgement a task's status calls for.
    fn of(status: TaskStatus) -> Self {
        match status {
            TaskStatus::Pending
            | TaskStatus::Running
            | TaskStatus::Queued
            | TaskStatus::Compensating
            | TaskStatus::AwaitingDependents => Self::Keep(KeepReason::Live),
            TaskStatus::Completed => Self::Keep(KeepReason::Completed),
            TaskStatus::Failed | TaskStatus::Compensated | TaskStatus::Cancelled | TaskStatus::CompensationFailed => {
                Self::Orphaned(OrphanReason::Ended(status))
            }
        }
    }
}

/// Reads the status out of a saga state payload of one task type.
pub(super) type StateReader = fn(&Payload) -> Option<TaskStatus>;

/// The [`StateReader`] of `T`: decodes the whole snapshot (the only way to
/// read an in-memory payload).
pub(super) fn read_state_of<T: Task>(payload: &Payload) -> Option<TaskStatus> {
    payload.decode_state::<T>().ok().map(|state| state.progress.status)
}

/// Judges `task_id`: by its progress, else by its saga state, else unknown.
///
/// A progress record or a saga state that exists but cannot be read keeps
/// the task's objects ([`KeepReason::Unreadable`]).
///
/// # Errors
/// Backend errors of the tracker or the store (codec errors are judged
/// unreadable instead).
pub(super) async fn judge(
    task_id: TaskId,
    progress: &dyn ProgressTracker,
    state: &dyn SagaStateStore,
    readers: &[StateReader],
    keys: Option<&KeyRing>,
) -> Result<Standing> {
    match progress.get(task_id).await {
        Ok(Some(progress)) => return Ok(Standing::of(progress.status)),
        Ok(None) => {}
        Err(error @ Error::Codec { .. }) => return Ok(unreadable(task_id, "progress", &error)),
        Err(error) => return Err(error),
    }
    let stored = match state.load(task_id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Ok(Standing::Orphaned(OrphanReason::Unknown)),
        Err(error @ Error::Codec { .. }) => return Ok(unreadable(task_id, "saga state", &error)),
        Err(error) => return Err(error),
    };
    let payload = match unseal(&stored.payload, keys, task_id, None) {
        Ok(payload) => payload,
        Err(error) => return Ok(unreadable(task_id, "saga state", &error)),
    };
    let status = match &payload {
        Payload::Encoded { format, bytes } => peek_status(*format, bytes).ok(),
        Payload::InMemory(_) => None,
    };
    match status.or_else(|| readers.iter().find_map(|read| read(&payload))) {
        Some(status) => Ok(Standing::of(status)),
        None => {
            let error = Error::invalid("saga state", "no registered task type reads it");
            Ok(unreadable(task_id, "saga state", &error))
        }
    }
}

fn unreadable(task_id: TaskId, what: &str, error: &Error) -> Standing {
    tracing::warn!(%task_id, %error, "cannot read the task's {what}: keeping its objects");
    Standing::Keep(KeepReason::Unreadable)
}

/// The status inside an encoded saga state of any task type: only the
/// progress part is decoded, so the task's own types need not be known.
///
/// # Errors
/// [`Error::Codec`] when the bytes hold no readable progress.
pub(super) fn peek_status(format: Format, bytes: &Bytes) -> Result<TaskStatus> {
    /// The part of a serde-encoded `SagaSnapshot` that holds the status.
    #[derive(Deserialize)]
    struct StatePeek {
        progress: ProgressPeek,
    }
    #[derive(Deserialize)]
    struct ProgressPeek {
        status: TaskStatus,
    }

    let codec = Codec::new(format);
    match format {
        Format::Json | Format::MessagePack => Ok(codec.deserialize::<StatePeek>(bytes)?.progress.status),
        Format::Protobuf => {
            let state = v1::SagaState::decode(bytes.as_ref()).map_err(|e| Error::Codec {
                format,
                source: e.into(),
            })?;
            let progress = state.progress.ok_or_else(|| Error::Codec {
                format,
                source: "the saga state holds no progress".into(),
            })?;
            Ok(codec.deserialize_progress(&progress.encode_to_vec())?.status)
        }
    }
}
