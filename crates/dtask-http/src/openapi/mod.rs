//! The OpenAPI 3.1 document of an API, built from its mounted tasks.
//!
//! It describes every route: one submit operation per task with its
//! multipart form (and JSON body for tasks without files), the id routes,
//! the list, health and readiness, the progress snapshot and the problem
//! format, and every error each route answers.

mod history_schemas;
mod hub;
mod schemas;

use serde_json::{Map, Value, json};

use crate::registry::Endpoint;
use crate::state::AppState;
use schemas::schema_ref;

/// The document of `state`'s API.
pub(crate) fn document(state: &AppState) -> Value {
    let mut paths = Map::new();
    let webhooks = state.webhooks.is_some();
    for endpoint in state.registry.iter() {
        paths.insert(endpoint.path(), json!({ "post": submit(endpoint, webhooks) }));
    }
    // The history's parameters and route are documented where it is kept.
    let history = state.host.history().is_some();
    paths.insert("/api/tasks".into(), json!({ "get": list(history) }));
    paths.insert(
        "/api/tasks/{id}".into(),
        json!({ "get": status("getTask"), "delete": cancel() }),
    );
    paths.insert(
        "/api/tasks/{id}/status".into(),
        json!({ "get": status("getTaskStatus") }),
    );
    paths.insert("/api/tasks/{id}/stream".into(), json!({ "get": stream() }));
    paths.insert("/api/tasks/{id}/ws".into(), json!({ "get": websocket() }));
    paths.insert("/api/tasks/{id}/result".into(), json!({ "get": result(state) }));
    paths.insert("/api/tasks/{id}/download".into(), json!({ "get": download() }));
    paths.insert("/api/tasks/{id}/retry".into(), json!({ "post": retry() }));
    if history {
        paths.insert("/api/tasks/{id}/history".into(), json!({ "get": task_history() }));
    }
    paths.insert("/api/dead-letters".into(), json!({ "get": dead_letters() }));
    paths.insert("/api/workers".into(), json!({ "get": workers() }));
    paths.insert("/api/queues".into(), json!({ "get": queues() }));
    paths.insert("/hubs/tasks/negotiate".into(), json!({ "post": hub::negotiate() }));
    paths.insert("/hubs/tasks".into(), json!({ "get": hub::connect() }));
    paths.insert("/api/openapi.json".into(), json!({ "get": openapi() }));
    paths.insert("/healthz".into(), json!({ "get": healthz() }));
    paths.insert("/readyz".into(), json!({ "get": readyz() }));
    let mut schemas = schemas::schemas(state.registry.iter(), webhooks);
    history_schemas::insert(&mut schemas);
    let mut components = json!({
        "schemas": schemas,
        "parameters": parameters(webhooks),
    });
    limits(&mut paths);
    let security = if state.auth.is_enabled() {
        secure(&mut paths, state);
        components["securitySchemes"] = security_schemes();
        json!([{ "bearerAuth": [] }, { "apiKeyHeader": [] }])
    } else {
        json!([])
    };
    let tasks: Vec<String> = state
        .registry
        .iter()
        .map(|e| format!("`{}` at `{}`", e.definition.name, e.path()))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "dtask",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Submit declared tasks, follow their progress (polling, Server-Sent Events, WebSocket, the SignalR hub at `/hubs/tasks` or a signed webhook), \
                 fetch their results and files, cancel them. Every error is `application/problem+json` (RFC 9457); \
                 unknown routes answer 404 and wrong methods 405 in that format. Tasks served: {}.",
                if tasks.is_empty() { "none".to_owned() } else { tasks.join(", ") }
            )
        },
        "paths": paths,
        "components": components,
        "security": security,
    })
}

/// The routes that stay open without credentials.
const OPEN_PATHS: [&str; 3] = ["/api/openapi.json", "/healthz", "/readyz"];

/// Declares the credentials every other route takes, and its `401` (and
/// `403` where a role is required).
fn secure(paths: &mut Map<String, Value>, state: &AppState) {
    let restricted: Vec<String> = state
        .registry
        .iter()
        .filter(|e| !e.definition.required_roles.is_empty())
        .map(|e| e.path())
        .collect();
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            if OPEN_PATHS.contains(&path.as_str()) {
                operation["security"] = json!([]);
                continue;
            }
            if path == crate::hub::HUB_PATH {
                operation["security"] =
                    json!([{ "bearerAuth": [] }, { "apiKeyHeader": [] }, { "accessTokenQuery": [] }]);
            }
            let responses = &mut operation["responses"];
            responses["401"] = problem(
                "Missing or invalid credentials (`unauthenticated`, `invalid-credentials`); the answer carries `WWW-Authenticate: Bearer`.",
            );
            if restricted.contains(path) {
                responses["403"] = problem("The caller holds none of the roles the task requires (`forbidden`).");
            } else if ["/api/dead-letters", "/api/workers", "/api/queues"].contains(&path.as_str()) {
                responses["403"] = problem("The caller is not an operator (`forbidden`).");
            }
        }
    }
}

/// Declares the answers of the bounds every route passes (`protect`):
/// `431` everywhere, `503` past the in-flight bound (and the subscriber
/// bounds on the streams), `403` for cross-site state changes.
fn limits(paths: &mut Map<String, Value>) {
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in operations.iter_mut() {
            let responses = &mut operation["responses"];
            responses["431"] = problem("The request's headers are too large (`headers-too-large`).");
            if OPEN_PATHS.contains(&path.as_str()) {
                continue;
            }
            let mut busy = "Too many requests in flight (`overloaded`, with `Retry-After`).".to_owned();
            if path.ends_with("/stream") || path.ends_with("/ws") {
                busy.push_str(" Too many live subscribers of the task or in all (`too-many-subscribers`).");
            }
            append(responses, "503", &busy);
            if method != "get" {
                append(
                    responses,
                    "403",
                    "A browser sent it from a page of another origin (`cross-site-request`).",
                );
            }
        }
    }
}

/// Adds `description` to the problem answer `status` of `responses`.
fn append(responses: &mut Value, status: &str, description: &str) {
    let merged = match responses[status]["description"].as_str() {
        Some(existing) => format!("{existing} {description}"),
        None => description.to_owned(),
    };
    responses[status] = problem(&merged);
}

fn security_schemes() -> Value {
    json!({
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT or API key",
            "description": "A JWT (its `sub` is the caller, its roles claim its roles) or an API key."
        },
        "apiKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Api-Key",
            "description": "An API key."
        },
        "accessTokenQuery": {
            "type": "apiKey",
            "in": "query",
            "name": "access_token",
            "description": "A JWT or an API key in the query, on the SignalR hub's WebSocket only (browsers cannot set its headers)."
        }
    })
}

/// The shared parameters; the webhook ones only when webhooks are
/// configured (a client could not use them otherwise).
fn parameters(webhooks: bool) -> Value {
    json!({
        "TaskId": {
            "name": "id", "in": "path", "required": true,
            "description": "The task's id, as the submission answered it.",
            "schema": { "type": "string", "format": "uuid" }
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "Makes the submission safe to repeat: the same key with the same request answers the first submission's 202 (same task); with a different request, 422; while the first is still being received, 409. Keys are remembered for 24 h by default.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" }
        },
        "Listening": {
            "name": "listening", "in": "query", "required": false,
            "description": "How the client will follow the task (also a form field): `polling` (`GET /api/tasks/{id}`), `sse` (`/api/tasks/{id}/stream`), `websocket` (`/api/tasks/{id}/ws`), `signalr` (the hub at `/hubs/tasks`: `Subscribe(taskId)`, then `TaskProgress` and `TaskCompleted`) or `webhook` (the terminal snapshot POSTed to `webhookUrl`). Only `webhook` changes what the server does.",
            "schema": { "type": "string", "enum": schemas::strategies(webhooks) }
        },
        "WebhookUrl": {
            "name": "webhookUrl", "in": "query", "required": false,
            "description": "Where to POST the terminal snapshot with `listening=webhook` (also a form field).",
            "schema": { "type": "string", "format": "uri" }
        }
    })
}

fn param(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": schema_ref("Problem") } }
    })
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

const BAD_ID: &str = "The id is not a UUID.";
const NO_TASK: &str = "No such task, or one the caller may not see.";
const UNAVAILABLE: &str = "A backend did not answer.";

fn submit(endpoint: &Endpoint, webhooks: bool) -> Value {
    let name = endpoint.definition.name;
    let mut content = Map::new();
    content.insert(
        "multipart/form-data".into(),
        json!({
            "schema": schema_ref(&format!("{name}Form")),
            "encoding": { "files": { "contentType": "application/octet-stream" } }
        }),
    );
    if !endpoint.takes_files {
        content.insert(
            "application/json".into(),
            json!({ "schema": schema_ref(&format!("{name}Request")) }),
        );
    }
    let mut description = format!(
        "Submits a {name} task. The files are streamed into object storage as they arrive. \
         Answers once the task's API steps ran and it was handed to the workers."
    );
    if endpoint.downloadable {
        description.push_str(" The task produces a file, served at `links.download` once it completed.");
    }
    json!({
        "operationId": format!("submit{name}"),
        "summary": format!("Submit a {name} task"),
        "description": description,
        "parameters": if webhooks {
            json!([param("IdempotencyKey"), param("Listening"), param("WebhookUrl")])
        } else {
            json!([param("IdempotencyKey"), param("Listening")])
        },
        "requestBody": { "required": true, "content": content },
        "responses": {
            "202": {
                "description": "Accepted: the task exists and runs.",
                "headers": {
                    "Location": { "description": "The task's status URL.", "schema": { "type": "string" } },
                    "Idempotent-Replayed": { "description": "`true` when this answers a repeated submission.", "schema": { "type": "string" } }
                },
                "content": { "application/json": { "schema": schema_ref("SubmitAccepted") } }
            },
            "400": problem("A malformed body or field, a missing `files` part, files for a task that takes none, too many files or fields, an unknown form field, a file name too long, an unknown `listening`, a webhook URL that does not parse, webhooks not configured, or a malformed Idempotency-Key."),
            "409": problem("A submission with this Idempotency-Key is still being received."),
            "413": problem("The upload exceeds the size limit."),
            "415": problem("The body is neither multipart/form-data nor (for tasks without files) application/json."),
            "422": problem("This Idempotency-Key was used with a different submission, a field came after a file, or the webhook URL is not http(s) or its host resolves to an address that is not public."),
            "500": problem("The task is mounted but not registered on the host."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn list(history: bool) -> Value {
    let mut operation = json!({
        "operationId": "listTasks",
        "summary": "Recent tasks, newest first",
        "description": "The caller's own tasks (every task for an operator). A server that keeps a task history (DTASK_HISTORY) lists from it, ended tasks included long after the progress tracker forgot them, in keyset pages: follow `nextCursor` with `cursor`; the creation-time filters and `cursor` need it. Without one, the progress tracker's recent tasks in `offset` pages.",
        "parameters": [
            { "name": "status", "in": "query", "required": false, "schema": schema_ref("TaskStatus") },
            { "name": "taskName", "in": "query", "required": false, "description": "The declared name or its kebab-case route segment.", "schema": { "type": "string" } },
            { "name": "submitter", "in": "query", "required": false, "description": "Only tasks this subject submitted (a caller that is not an operator sees only its own).", "schema": { "type": "string" } },
            { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 50 } }
        ],
        "responses": {
            "200": ok_json("One page of tasks.", schema_ref("TaskPage")),
            "400": problem("An unknown status, a malformed time or cursor, a limit or offset out of range, an offset where pages follow a cursor, or a history-only parameter on a server without a history."),
            "503": problem(UNAVAILABLE)
        }
    });
    let paging = if history {
        json!([
            { "name": "createdAfter", "in": "query", "required": false, "description": "Only tasks created at or after this time.", "schema": { "type": "string", "format": "date-time" } },
            { "name": "createdBefore", "in": "query", "required": false, "description": "Only tasks created before this time.", "schema": { "type": "string", "format": "date-time" } },
            { "name": "cursor", "in": "query", "required": false, "description": "The `nextCursor` of the previous page.", "schema": { "type": "string" } }
        ])
    } else {
        json!([
            { "name": "offset", "in": "query", "required": false, "description": "Tasks to skip.", "schema": { "type": "integer", "minimum": 0, "default": 0 } }
        ])
    };
    if let (Some(parameters), Value::Array(more)) = (operation["parameters"].as_array_mut(), paging) {
        parameters.extend(more);
    }
    operation
}

fn status(operation_id: &str) -> Value {
    json!({
        "operationId": operation_id,
        "summary": "The task's progress snapshot (polling)",
        "parameters": [param("TaskId")],
        "responses": {
            "200": ok_json("The current snapshot.", schema_ref("TaskProgress")),
            "400": problem(BAD_ID),
            "404": problem(NO_TASK),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn cancel() -> Value {
    json!({
        "operationId": "cancelTask",
        "summary": "Cancel the task",
        "description": "The running step's token fires, then the completed steps are compensated and the task ends as cancelled.",
        "parameters": [param("TaskId")],
        "responses": {
            "202": ok_json("Cancellation requested.", schema_ref("CancelAccepted")),
            "400": problem(BAD_ID),
            "404": problem(NO_TASK),
            "409": problem("The task has already ended (`task-ended`, with `taskStatus`) or is not cancellable (`not-cancellable`)."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn retry() -> Value {
    json!({
        "operationId": "retryTask",
        "summary": "Replay a dead-lettered task",
        "description": "Publishes the task to its queue again with its last saved snapshot and removes its dead letters: a worker resumes it after its last completed step.",
        "parameters": [param("TaskId")],
        "responses": {
            "202": ok_json("The task is back in its queue.", schema_ref("RetryAccepted")),
            "400": problem(BAD_ID),
            "404": problem(NO_TASK),
            "409": problem("The task has already ended (`task-ended`, with `taskStatus`) or has no dead letter (`not-dead-lettered`)."),
            "501": problem("The queue backend keeps no dead letters."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn task_history() -> Value {
    json!({
        "operationId": "getTaskHistory",
        "summary": "The task's durable history",
        "description": "Everything the task history keeps of the task: its row (the last saved progress, version, deadline, response summary), every step attempt (where and when it ran, how it ended), the conditions' snapshots with the values they saw, and the audit log (who did what, when, before and after, with the trace id), in order. Written a moment after the events, in batches.",
        "parameters": [param("TaskId")],
        "responses": {
            "200": ok_json("The task's history.", schema_ref("TaskHistory")),
            "400": problem(BAD_ID),
            "404": problem("The history holds no such task, or it is someone else's."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn workers() -> Value {
    json!({
        "operationId": "listWorkers",
        "summary": "The workers of the deployment",
        "description": "Each worker that announced itself within its heartbeat's lifetime (15 s), by id: host, pid, version, queues, concurrency, deliveries in flight, start and last heartbeat. A worker that dies drops out when its entry expires.",
        "responses": {
            "200": ok_json("The live workers.", schema_ref("WorkerPage")),
            "501": problem("The deployment keeps no worker registry."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn queues() -> Value {
    json!({
        "operationId": "listQueues",
        "summary": "How deep each task queue is",
        "description": "For each queue the host's tasks declare: the messages waiting for a worker and, where the backend tells (not RabbitMQ), those delivered and not settled yet.",
        "responses": {
            "200": ok_json("The queues.", schema_ref("QueuePage")),
            "501": problem("The queue backend does not tell its depth."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn dead_letters() -> Value {
    json!({
        "operationId": "listDeadLetters",
        "summary": "Messages the workers gave up on",
        "description": "Up to `limit` dead letters of each task queue, oldest first within a queue: messages delivered too often, or that a worker could not read (unknown format, newer schema, unknown task). Replay one with `POST /api/tasks/{id}/retry`.",
        "parameters": [
            { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 50 } }
        ],
        "responses": {
            "200": ok_json("The dead letters.", schema_ref("DeadLetterPage")),
            "400": problem("A limit out of range."),
            "501": problem("The queue backend keeps no dead letters."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn stream() -> Value {
    json!({
        "operationId": "streamTask",
        "summary": "The task's snapshots as Server-Sent Events",
        "description": "Each snapshot is an event `progress` with `id` = its revision and `data` = its JSON (a TaskProgress): the current one first, then every change; the stream ends after the terminal one. Keep-alive comments keep idle connections open. A reconnect (Last-Event-ID) starts again with the current snapshot.",
        "parameters": [param("TaskId")],
        "responses": {
            "200": {
                "description": "The event stream.",
                "content": { "text/event-stream": { "schema": {
                    "type": "object",
                    "description": "One event: `event: progress`, `id:` the snapshot's revision, `data:` the snapshot's JSON.",
                    "required": ["data"],
                    "properties": {
                        "event": { "type": "string", "const": crate::routes::PROGRESS_EVENT },
                        "id": { "type": "string" },
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": schema_ref("TaskProgress")
                        }
                    }
                } } }
            },
            "400": problem(BAD_ID),
            "404": problem(NO_TASK),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn websocket() -> Value {
    json!({
        "operationId": "watchTask",
        "summary": "The task's snapshots over a WebSocket",
        "description": "After the upgrade the server sends each snapshot as a JSON text message (a TaskProgress), the current one first, and closes with code 1000 after the terminal one.",
        "parameters": [param("TaskId")],
        "responses": {
            "101": { "description": "Switching to the WebSocket protocol." },
            "400": problem("The id is not a UUID, or the request is not a WebSocket handshake."),
            "404": problem(NO_TASK),
            "426": problem("The connection cannot be upgraded."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn result(state: &AppState) -> Value {
    let responses: Vec<Value> = state
        .registry
        .iter()
        .map(|e| schema_ref(&format!("{}Response", e.definition.name)))
        .collect();
    json!({
        "operationId": "getTaskResult",
        "summary": "The typed response of a completed task",
        "parameters": [param("TaskId")],
        "responses": {
            "200": ok_json("The task's response.", json!({ "anyOf": responses })),
            "400": problem(BAD_ID),
            "404": problem("No such task, or its type is not served here."),
            "409": problem("The task has not ended (`task-not-finished`), or ended without completing (`task-failed`, `task-cancelled`, with `taskStatus` and `error`)."),
            "500": problem("The task completed but its response could not be read."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn download() -> Value {
    // The task names the file's media type (`application/zip`...).
    let file = json!({ "*/*": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } });
    let headers = json!({
        "Content-Disposition": { "description": "`attachment` with the file's name (`filename` and `filename*`).", "schema": { "type": "string" } },
        "Content-Length": { "schema": { "type": "integer" } },
        "Accept-Ranges": { "schema": { "type": "string", "const": "bytes" } }
    });
    let mut partial_headers = headers.clone();
    partial_headers["Content-Range"] = json!({ "schema": { "type": "string" }, "description": "`bytes a-b/size`." });
    json!({
        "operationId": "downloadTaskFile",
        "summary": "The file the task produced",
        "description": "Streams the produced file with its own media type (application/zip for CreateZipFromFiles). Honours one byte range (`Range: bytes=a-b`, `a-`, `-n`).",
        "parameters": [
            param("TaskId"),
            { "name": "Range", "in": "header", "required": false, "schema": { "type": "string" } }
        ],
        "responses": {
            "200": { "description": "The whole file.", "headers": headers, "content": file },
            "206": { "description": "The requested range.", "headers": partial_headers, "content": file },
            "400": problem(BAD_ID),
            "404": problem("No such task, its type produces no file, or the file is gone."),
            "409": problem("The task has not completed (`task-not-finished`, `task-failed`, `task-cancelled`)."),
            "416": problem("The range starts past the end of the file (`Content-Range: bytes */size`)."),
            "503": problem(UNAVAILABLE)
        }
    })
}

fn openapi() -> Value {
    json!({
        "operationId": "getOpenApi",
        "summary": "This document",
        "responses": { "200": ok_json("The OpenAPI 3.1 document.", json!({ "type": "object" })) }
    })
}

fn healthz() -> Value {
    json!({
        "operationId": "healthz",
        "summary": "Liveness: the process answers",
        "responses": { "200": ok_json("Alive.", schema_ref("Health")) }
    })
}

fn readyz() -> Value {
    json!({
        "operationId": "readyz",
        "summary": "Readiness: every backend answers",
        "responses": {
            "200": ok_json("Every backend answered.", schema_ref("Health")),
            "503": problem("Some backends did not answer (`failing` lists them).")
        }
    })
}
