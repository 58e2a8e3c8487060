//! The component schemas of the OpenAPI document: the progress snapshot
//! and its parts, the answers of the routes, the problem format, and one
//! request and response schema per mounted task.

use dtask_core::TaskStatus;
use serde_json::{Map, Value, json};

use crate::registry::Endpoint;
use crate::submit::{FILES_PART, STRATEGIES};

/// A reference to a component schema.
pub(super) fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Every component schema.
pub(super) fn schemas<'a>(
    endpoints: impl Iterator<Item = &'a std::sync::Arc<Endpoint>>,
    webhooks: bool,
) -> Map<String, Value> {
    let mut schemas = Map::new();
    let statuses: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
    schemas.insert(
        "TaskStatus".into(),
        json!({ "type": "string", "enum": statuses, "description": "The life-cycle state of a task. `completed`, `failed`, `compensated`, `cancelled` and `compensationFailed` are terminal; `awaitingDependents`: every step completed, and the task waits for dependents declared `compensate_upstream`." }),
    );
    schemas.insert(
        "StepStatus".into(),
        json!({ "type": "string", "enum": ["pending", "running", "retrying", "completed", "failed", "skipped", "cancelled", "compensating", "compensated", "compensationFailed"] }),
    );
    schemas.insert(
        "StepHost".into(),
        json!({ "type": "string", "enum": ["api", "worker"] }),
    );
    schemas.insert("ObservedValue".into(), observed_value());
    schemas.insert("ConditionSnapshot".into(), condition_snapshot());
    schemas.insert("StepState".into(), step_state());
    schemas.insert("TaskProgress".into(), task_progress());
    schemas.insert("SubmitAccepted".into(), submit_accepted());
    schemas.insert("CancelAccepted".into(), cancel_accepted());
    schemas.insert("TaskPage".into(), task_page());
    schemas.insert("RetryAccepted".into(), retry_accepted());
    schemas.insert("DeadLetter".into(), dead_letter());
    schemas.insert("DeadLetterPage".into(), dead_letter_page());
    schemas.insert("Health".into(), health());
    schemas.insert("Worker".into(), worker());
    schemas.insert("WorkerPage".into(), worker_page());
    schemas.insert("QueuePage".into(), queue_page());
    schemas.insert("Problem".into(), problem());
    for endpoint in endpoints {
        let name = endpoint.definition.name;
        schemas.insert(format!("{name}Form"), form(endpoint, webhooks));
        schemas.insert(
            format!("{name}Request"),
            object(&endpoint.request_fields, "The task's request as JSON."),
        );
        schemas.insert(
            format!("{name}Response"),
            object(
                &endpoint.response_fields,
                &format!("The response of a completed {name} task."),
            ),
        );
    }
    schemas
}

fn observed_value() -> Value {
    json!({
        "type": "object",
        "description": "A value a step's condition read, as text.",
        "required": ["path", "value"],
        "properties": {
            "path": { "type": "string", "description": "The expression read, e.g. `extract_metadata.height`." },
            "value": { "type": "string" }
        }
    })
}

fn condition_snapshot() -> Value {
    json!({
        "type": "object",
        "description": "A condition's evaluation: the expression, the values it saw and its verdict.",
        "required": ["expression", "observed", "holds"],
        "properties": {
            "expression": { "type": "string" },
            "observed": { "type": "array", "items": schema_ref("ObservedValue") },
            "holds": { "type": "boolean" }
        }
    })
}

fn step_state() -> Value {
    json!({
        "type": "object",
        "description": "The state of one step.",
        "required": ["name", "order", "host", "status", "attempts"],
        "properties": {
            "name": { "type": "string" },
            "order": { "type": "integer", "minimum": 0 },
            "host": schema_ref("StepHost"),
            "group": { "type": "string", "description": "The parallel group the step belongs to." },
            "status": schema_ref("StepStatus"),
            "attempts": { "type": "integer", "minimum": 0 },
            "fraction": { "type": "number", "minimum": 0, "maximum": 1, "description": "What the running step reported." },
            "message": { "type": "string" },
            "error": { "type": "string", "description": "The last error." },
            "condition": schema_ref("ConditionSnapshot"),
            "worker": { "type": "string", "description": "The process that ran its last attempt: its node name, as `GET /api/workers` lists it." },
            "completionOrder": { "type": "integer", "minimum": 1, "description": "Position in the order of completion; compensation walks it backwards." },
            "startedAt": { "type": "string", "format": "date-time" },
            "finishedAt": { "type": "string", "format": "date-time" }
        }
    })
}

fn task_progress() -> Value {
    json!({
        "type": "object",
        "description": "A task's progress snapshot: what polling, SSE, WebSocket and webhooks carry.",
        "required": ["taskId", "taskName", "status", "totalSteps", "completedSteps", "percent", "steps", "cancellable", "cancelRequested", "isComplete", "revision", "createdAt", "updatedAt"],
        "properties": {
            "taskId": { "type": "string", "format": "uuid" },
            "taskName": { "type": "string", "description": "The declared name, e.g. `CreateZipFromFiles`." },
            "submitter": { "type": "string", "description": "Who submitted it (the subject of its caller's credentials); only they and operators see the task." },
            "traceId": { "type": "string", "pattern": "^[0-9a-f]{32}$", "description": "The task's W3C trace id, given at submit." },
            "parentTaskId": { "type": "string", "format": "uuid", "description": "The task whose completion started this one (`#[depends_on]`)." },
            "status": schema_ref("TaskStatus"),
            "totalSteps": { "type": "integer", "minimum": 0 },
            "completedSteps": { "type": "integer", "minimum": 0, "description": "Steps completed or skipped." },
            "currentStep": { "type": "string" },
            "percent": { "type": "number", "minimum": 0, "maximum": 100 },
            "steps": { "type": "array", "items": schema_ref("StepState") },
            "message": { "type": "string", "description": "A summary of the last change." },
            "error": { "type": "string", "description": "The error that ended (or is compensating) the task." },
            "cancellable": { "type": "boolean" },
            "cancelRequested": { "type": "boolean" },
            "isComplete": { "type": "boolean", "description": "Whether the task has ended." },
            "success": { "type": "boolean", "description": "Whether it ended well; absent while it runs." },
            "revision": { "type": "integer", "minimum": 0, "description": "Incremented by every change; the SSE event id." },
            "createdAt": { "type": "string", "format": "date-time" },
            "updatedAt": { "type": "string", "format": "date-time" },
            "completedAt": { "type": "string", "format": "date-time" },
            "dependents": {
                "type": "array",
                "description": "The tasks that depend on this one (`#[depends_on]`), judged when it completed.",
                "items": {
                    "type": "object",
                    "required": ["taskName", "taskId", "started"],
                    "properties": {
                        "taskName": { "type": "string" },
                        "taskId": { "type": "string", "format": "uuid", "description": "Derived from this task's id: the same every time." },
                        "started": { "type": "boolean", "description": "Whether it was started (its condition held, or it has none)." },
                        "condition": schema_ref("ConditionSnapshot")
                    }
                }
            }
        }
    })
}

fn submit_accepted() -> Value {
    let link = json!({ "type": "string", "format": "uri-reference" });
    json!({
        "type": "object",
        "description": "A submission was accepted: the task's id, status and where to follow it.",
        "required": ["taskId", "status", "links"],
        "properties": {
            "taskId": { "type": "string", "format": "uuid" },
            "status": schema_ref("TaskStatus"),
            "links": {
                "type": "object",
                "required": ["status", "stream", "ws", "result", "cancel"],
                "properties": {
                    "status": link, "stream": link, "ws": link, "result": link,
                    "download": { "type": "string", "format": "uri-reference", "description": "Only for tasks that produce a file." },
                    "cancel": link
                }
            }
        }
    })
}

fn cancel_accepted() -> Value {
    json!({
        "type": "object",
        "required": ["taskId", "status"],
        "properties": {
            "taskId": { "type": "string", "format": "uuid" },
            "status": { "type": "string", "const": "cancelling" }
        }
    })
}

fn retry_accepted() -> Value {
    json!({
        "type": "object",
        "required": ["taskId", "status"],
        "properties": {
            "taskId": { "type": "string", "format": "uuid" },
            "status": { "type": "string", "const": "requeued" }
        }
    })
}

fn dead_letter() -> Value {
    let nullable = |schema: Value| json!({ "oneOf": [schema, { "type": "null" }] });
    json!({
        "type": "object",
        "required": ["queue", "id", "taskId", "taskName", "messageId", "deliveries", "reason", "taskStatus", "errors"],
        "properties": {
            "queue": { "type": "string", "description": "The task queue, as the task declares it." },
            "id": { "type": "string", "description": "The broker's id of the dead letter." },
            "taskId": nullable(json!({ "type": "string", "format": "uuid" })),
            "taskName": nullable(json!({ "type": "string" })),
            "messageId": nullable(json!({ "type": "string", "format": "uuid" })),
            "deliveries": { "type": "integer", "minimum": 0, "description": "How many times it was delivered." },
            "reason": { "type": "string", "description": "Why it was moved aside." },
            "taskStatus": nullable(schema_ref("TaskStatus")),
            "errors": {
                "type": "array",
                "description": "The task's error history: each step that failed at least once, with its attempts and last error.",
                "items": {
                    "type": "object",
                    "required": ["step", "attempts", "error"],
                    "properties": {
                        "step": { "type": "string" },
                        "attempts": { "type": "integer", "minimum": 0 },
                        "error": { "type": "string" }
                    }
                }
            }
        },
        "description": "`taskId`, `taskName` and `messageId` are null when the message could not be read at all; `taskStatus` is null when the task is not known."
    })
}

fn dead_letter_page() -> Value {
    json!({
        "type": "object",
        "required": ["items", "limit"],
        "properties": {
            "items": { "type": "array", "items": schema_ref("DeadLetter") },
            "limit": { "type": "integer", "minimum": 1, "maximum": 1000 }
        }
    })
}

fn task_page() -> Value {
    json!({
        "type": "object",
        "description": "From the progress tracker: `total` and `offset`; from a task history: `nextCursor`.",
        "required": ["items", "limit"],
        "properties": {
            "items": { "type": "array", "items": schema_ref("TaskProgress"), "description": "Newest first." },
            "total": { "type": "integer", "minimum": 0, "description": "How many tasks match in all (without a history)." },
            "limit": { "type": "integer", "minimum": 1, "maximum": 200 },
            "offset": { "type": "integer", "minimum": 0 },
            "nextCursor": { "type": ["string", "null"], "description": "The `cursor` of the next page; null on the last (with a history)." }
        }
    })
}

fn worker() -> Value {
    json!({
        "type": "object",
        "required": ["id", "host", "pid", "version", "queues", "concurrency", "inFlight", "startedAt", "lastSeen"],
        "properties": {
            "id": { "type": "string", "description": "The worker's node name, as step attempts and audit entries name it." },
            "host": { "type": "string" },
            "pid": { "type": "integer", "minimum": 0 },
            "version": { "type": "string", "description": "The dtask version it runs." },
            "queues": { "type": "array", "items": { "type": "string" } },
            "concurrency": { "type": "integer", "minimum": 0 },
            "inFlight": { "type": "integer", "minimum": 0, "description": "Deliveries it holds now." },
            "startedAt": { "type": "string", "format": "date-time" },
            "lastSeen": { "type": "string", "format": "date-time", "description": "Its last heartbeat." }
        }
    })
}

fn worker_page() -> Value {
    json!({
        "type": "object",
        "required": ["items"],
        "properties": { "items": { "type": "array", "items": schema_ref("Worker") } }
    })
}

fn queue_page() -> Value {
    json!({
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["queue", "waiting", "inFlight"],
                    "properties": {
                        "queue": { "type": "string", "description": "The task queue, as the tasks declare it." },
                        "waiting": { "type": "integer", "minimum": 0, "description": "Messages waiting for a worker." },
                        "inFlight": {
                            "oneOf": [{ "type": "integer", "minimum": 0 }, { "type": "null" }],
                            "description": "Messages delivered and not settled yet; null where the backend cannot tell."
                        }
                    }
                }
            }
        }
    })
}

fn health() -> Value {
    json!({
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": { "type": "string", "enum": ["ok", "ready"] },
            "services": {
                "type": "array",
                "description": "`/readyz`: each backend's answer to a ping, and how long it took.",
                "items": {
                    "type": "object",
                    "required": ["service", "ok", "latencyMs"],
                    "properties": {
                        "service": { "type": "string" },
                        "ok": { "type": "boolean" },
                        "latencyMs": { "type": "number", "minimum": 0 },
                        "error": { "type": "string" }
                    }
                }
            }
        }
    })
}

fn problem() -> Value {
    json!({
        "type": "object",
        "description": "An error, as RFC 9457 describes (`application/problem+json`).",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": { "type": "string", "format": "uri", "description": "The kind of problem, e.g. `https://dtask.invalid/problems/task-failed`." },
            "title": { "type": "string" },
            "status": { "type": "integer", "description": "The HTTP status." },
            "detail": { "type": "string", "description": "What happened this time." },
            "instance": { "type": "string", "format": "uri-reference" },
            "taskId": { "type": "string", "format": "uuid", "description": "The task concerned." },
            "taskStatus": schema_ref("TaskStatus"),
            "error": { "type": ["string", "null"], "description": "The error that ended the task." },
            "failing": {
                "type": "array",
                "description": "The services a readiness probe found down.",
                "items": {
                    "type": "object",
                    "required": ["service", "error"],
                    "properties": { "service": { "type": "string" }, "error": { "type": "string" } }
                }
            }
        }
    })
}

/// The multipart form of a task: its scalar fields first, then its files.
/// The listening strategies a client may name: `webhook` only when
/// webhooks are configured.
pub(super) fn strategies(webhooks: bool) -> Vec<&'static str> {
    STRATEGIES.into_iter().filter(|s| webhooks || *s != "webhook").collect()
}

fn form(endpoint: &Endpoint, webhooks: bool) -> Value {
    let mut properties = Map::new();
    for field in &endpoint.request_fields {
        properties.insert(
            (*field).to_owned(),
            json!({
                "type": "string",
                "description": format!("The request's `{field}`: a string, or a JSON value for fields of other types.")
            }),
        );
    }
    properties.insert(
        "listening".into(),
        json!({ "type": "string", "enum": strategies(webhooks), "description": "How the client will follow the task; `webhook` needs `webhookUrl`." }),
    );
    if webhooks {
        properties.insert(
            "webhookUrl".into(),
        json!({ "type": "string", "format": "uri", "description": "An http or https URL the terminal snapshot is POSTed to, signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`). Hosts resolving to internal addresses are refused (422)." }),
        );
    }
    let mut required = Vec::new();
    if endpoint.takes_files {
        properties.insert(
            FILES_PART.into(),
            json!({
                "type": "array",
                "minItems": 1,
                "items": { "type": "string", "contentMediaType": "application/octet-stream" },
                "description": "The files, one part each, after every scalar field."
            }),
        );
        required.push(FILES_PART);
    }
    let mut form = json!({
        "type": "object",
        "description": format!(
            "A {} submission. Scalar fields must come before the first file part (as S3's POST policy form requires).",
            endpoint.definition.name
        ),
        "required": required,
        "properties": properties
    });
    if !endpoint.request_fields.is_empty() {
        form["additionalProperties"] = json!(false);
    }
    form
}

/// An object with these properties, of types the document does not know.
fn object(fields: &[&'static str], description: &str) -> Value {
    let properties: Map<String, Value> = fields.iter().map(|f| ((*f).to_owned(), json!({}))).collect();
    json!({ "type": "object", "description": description, "properties": properties })
}
