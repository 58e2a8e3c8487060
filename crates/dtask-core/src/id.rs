//! Task identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The globally unique id of one task run.
///
/// A UUIDv7, so ids sort by creation time. It is what the HTTP routes, the
/// lock names, the object keys and the snapshots are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(Uuid);

impl TaskId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id of the task named `name` that task `upstream` starts (a
    /// `#[depends_on]` edge): a UUIDv5 of both, the same every time, so a
    /// dependent started twice is found instead of duplicated.
    pub fn derived(upstream: TaskId, name: &str) -> Self {
        Self(Uuid::new_v5(&upstream.0, name.as_bytes()))
    }

    /// The id of the run of member step `step` of a distributed parallel
    /// group of task `parent`: a UUIDv5 of both (in a namespace of its own,
    /// apart from [`TaskId::derived`]), so every delivery of the member's
    /// message finds the same run.
    pub fn member(parent: TaskId, step: &str) -> Self {
        Self(Uuid::new_v5(&parent.0, format!("member/{step}").as_bytes()))
    }

    /// The id as a UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for TaskId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for TaskId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}
