//! What a step is and what it saw: [`StepRef`] names a step, and a
//! [`ConditionSnapshot`] keeps what a condition read when it was evaluated.

use serde::{Deserialize, Serialize};

/// A step named in an event or a context: its position in the declaration and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRef {
    /// Index in the task's step list (sorted by order).
    pub index: usize,
    /// The declared name.
    pub name: &'static str,
}

/// A value a condition read, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedValue {
    /// The expression read, e.g. `extract_metadata.height`.
    pub path: String,
    /// Its value when the condition was evaluated (`Debug` formatted).
    pub value: String,
}

/// A condition's evaluation, kept for audit: the expression, the values it
/// saw and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionSnapshot {
    /// The declared expression.
    pub expression: String,
    /// The values it read.
    pub observed: Vec<ObservedValue>,
    /// Whether it held.
    pub holds: bool,
}
