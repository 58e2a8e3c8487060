//! The schemas of `GET /api/tasks/{id}/history`.

use serde_json::{Map, Value, json};

use super::schemas::schema_ref;

/// Adds `TaskHistory` and the schemas it is made of.
pub(super) fn insert(schemas: &mut Map<String, Value>) {
    schemas.insert("TaskHistory".into(), task_history());
    schemas.insert("TaskRecord".into(), task_record());
    schemas.insert("StepAttempt".into(), step_attempt());
    schemas.insert("ConditionRecord".into(), condition_record());
    schemas.insert("AuditEntry".into(), audit_entry());
}

fn task_history() -> Value {
    json!({
        "type": "object",
        "required": ["task", "attempts", "conditions", "audit"],
        "properties": {
            "task": schema_ref("TaskRecord"),
            "attempts": { "type": "array", "items": schema_ref("StepAttempt"), "description": "In the order they started; attempts whose start was not recorded last." },
            "conditions": { "type": "array", "items": schema_ref("ConditionRecord"), "description": "In the order they were evaluated." },
            "audit": { "type": "array", "items": schema_ref("AuditEntry"), "description": "In time order." }
        }
    })
}

fn task_record() -> Value {
    json!({
        "type": "object",
        "required": ["progress", "version"],
        "properties": {
            "progress": schema_ref("TaskProgress"),
            "version": { "type": "integer", "minimum": 1, "description": "The task's declared version." },
            "deadline": { "type": ["string", "null"], "format": "date-time" },
            "responseSummary": { "type": "string", "description": "The response of a completed task as JSON, cut to 2 KiB (never for a task declaring encrypt_messages)." }
        }
    })
}

fn step_attempt() -> Value {
    json!({
        "type": "object",
        "required": ["taskId", "step", "order", "host", "kind", "attempt", "worker"],
        "properties": {
            "taskId": { "type": "string", "format": "uuid" },
            "step": { "type": "string" },
            "order": { "type": "integer", "minimum": 0 },
            "host": schema_ref("StepHost"),
            "kind": { "type": "string", "enum": ["run", "compensation"] },
            "attempt": { "type": "integer", "minimum": 1 },
            "worker": { "type": "string", "description": "The process that ran it (`<host name>:<pid>` unless named)." },
            "startedAt": { "type": ["string", "null"], "format": "date-time" },
            "endedAt": { "type": ["string", "null"], "format": "date-time", "description": "Null while it runs, or when its process died in it." },
            "outcome": { "type": "string", "enum": ["succeeded", "failed", "cancelled"] },
            "error": { "type": "string" }
        }
    })
}

fn condition_record() -> Value {
    json!({
        "type": "object",
        "required": ["taskId", "step", "snapshot", "at"],
        "properties": {
            "taskId": { "type": "string", "format": "uuid" },
            "step": { "type": "string" },
            "snapshot": schema_ref("ConditionSnapshot"),
            "at": { "type": "string", "format": "date-time" }
        }
    })
}

fn audit_entry() -> Value {
    json!({
        "type": "object",
        "required": ["id", "taskId", "at", "actor", "action"],
        "properties": {
            "id": { "type": "string", "format": "uuid" },
            "taskId": { "type": "string", "format": "uuid" },
            "at": { "type": "string", "format": "date-time" },
            "actor": { "type": "string", "description": "The subject that asked (submit, cancel, retry), or `system:<node>` for the process that made the change." },
            "action": { "type": "string", "description": "`submit`, `cancel`, `retry`, `deadLetter`, `historyGap`, or the type of the task's event (`stepStarted`, `compensating`, `completed`, ...)." },
            "step": { "type": "string" },
            "before": { "type": "string", "description": "The status (of the step, if one, else of the task) before." },
            "after": { "type": "string" },
            "detail": { "type": "string" },
            "traceId": { "type": "string", "pattern": "^[0-9a-f]{32}$" }
        }
    })
}
