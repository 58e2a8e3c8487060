//! The SignalR hub's two routes in the OpenAPI document: its negotiate
//! request and its WebSocket (whose hub protocol OpenAPI cannot describe;
//! the description names its methods).

use serde_json::{Value, json};

use super::{ok_json, problem};

/// `POST /hubs/tasks/negotiate`.
pub(super) fn negotiate() -> Value {
    json!({
        "operationId": "negotiateTaskHub",
        "summary": "Negotiate a SignalR connection to the task hub",
        "description": "The first request of a SignalR client (ASP.NET Core SignalR, negotiate version 1). The only transport offered is WebSockets, with text frames (the JSON hub protocol). The connection token is good for one connection, by the same caller, for 30 s.",
        "parameters": [{
            "name": "negotiateVersion", "in": "query", "required": false,
            "description": "The negotiate version the client speaks: 1 answers a `connectionToken`; 0 (the default) only a `connectionId`, which the client then connects with.",
            "schema": { "type": "integer", "minimum": 0, "maximum": 4_294_967_295_u32 }
        }],
        "responses": {
            "200": ok_json("Where and how to connect.", json!({
                "type": "object",
                "required": ["negotiateVersion", "connectionId", "availableTransports"],
                "properties": {
                    "negotiateVersion": { "type": "integer", "enum": [0, 1] },
                    "connectionId": { "type": "string" },
                    "connectionToken": { "type": "string", "description": "With negotiate version 1: the `id` to connect with." },
                    "availableTransports": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["transport", "transferFormats"],
                            "properties": {
                                "transport": { "type": "string", "const": "WebSockets" },
                                "transferFormats": { "type": "array", "items": { "type": "string", "const": "Text" } }
                            }
                        }
                    }
                }
            })),
            "400": problem("A `negotiateVersion` that is not a number."),
            "503": problem("Too many connections are being negotiated (`service-unavailable`).")
        }
    })
}

/// `GET /hubs/tasks`.
pub(super) fn connect() -> Value {
    json!({
        "operationId": "connectTaskHub",
        "summary": "The SignalR task hub's WebSocket",
        "description": "After the upgrade: the SignalR JSON hub protocol, version 1 (records ended by 0x1E; the handshake `{\"protocol\":\"json\",\"version\":1}` is answered `{}`). Hub methods: `Subscribe(taskId)` completes once the caller may follow the task, or with an error (a malformed id, a task that does not exist or is not the caller's, too many subscribers); then the client method `TaskProgress(snapshot)` receives the current snapshot and every change (TaskProgress objects), and `TaskCompleted(snapshot)` the terminal one. `Unsubscribe(taskId)` stops them. The server pings every 15 s and closes a connection silent for 30 s. Long polling and server-sent events are not served.",
        "parameters": [
            {
                "name": "id", "in": "query", "required": false,
                "description": "The negotiated connection token (or, with negotiate version 0, the connection id). Without one (a client that skips negotiation), a new connection.",
                "schema": { "type": "string" }
            },
            {
                "name": "access_token", "in": "query", "required": false,
                "description": "The caller's credentials (a JWT or an API key), as browsers' SignalR clients send them; a request with an `Authorization` or `X-Api-Key` header uses the header.",
                "schema": { "type": "string" }
            }
        ],
        "responses": {
            "101": { "description": "Switching to the WebSocket protocol." },
            "400": problem("The request is not a WebSocket handshake (`websockets-only`: long polling and server-sent events are not served)."),
            "404": problem("The `id` is not a connection negotiated by this caller, or it expired (`no-connection`).")
        }
    })
}
