//! One hub connection, from its handshake to its close.
//!
//! Hub methods (names match case-insensitively, as ASP.NET's do):
//! - `Subscribe(taskId)` completes once the caller may follow the task
//!   (with an error for a malformed id, a task that does not exist or is
//!   not the caller's, and past the subscriber bounds); then the client's
//!   `TaskProgress(snapshot)` is called with the current snapshot and
//!   every change, the same snapshots as the SSE stream, and
//!   `TaskCompleted(snapshot)` after the terminal one. Subscribing to a
//!   task twice changes nothing.
//! - `Unsubscribe(taskId)` stops them; it completes without error whether
//!   or not the task was subscribed.
//!
//! Calls are served one at a time, in order. The server pings every
//! [`ApiConfig::hub_keep_alive`](crate::ApiConfig::hub_keep_alive) and
//! closes the connection (a close message with an error) when the client
//! sends nothing for
//! [`hub_client_timeout`](crate::ApiConfig::hub_client_timeout), when it
//! sends a message that is not one of the protocol, or a message larger
//! than [`MAX_MESSAGE`]. A subscription whose progress can no longer be
//! followed (the host stopped) closes the connection with an error that
//! allows the client to reconnect and subscribe again.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use dtask_core::{Caller, TaskId};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::protocol::{self, Incoming, Records};
use crate::follow::snapshots;
use crate::state::Shared;

/// The largest message a client may send (ASP.NET's default).
pub(crate) const MAX_MESSAGE: usize = 32 * 1024;

/// How long the client has to send its handshake after connecting.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How many records the subscriptions may queue for the socket before
/// they wait for it (a slow client slows them, never loses a snapshot).
const OUTBOUND_CAPACITY: usize = 64;

/// The client method called with each snapshot.
const PROGRESS_METHOD: &str = "TaskProgress";
/// The client method called with the terminal snapshot.
const COMPLETED_METHOD: &str = "TaskCompleted";

/// What the subscriptions hand the connection.
enum Outbound {
    /// A record to send.
    Record(String),
    /// Subscription `generation` to task `TaskId` sent its terminal
    /// snapshot and ended.
    Ended(TaskId, u64),
    /// Subscription `generation` to the task lost its progress stream
    /// before the task ended.
    Lost(TaskId, u64),
}

/// Why the connection closes.
enum Closing {
    /// The client closed it, or went away.
    ByClient,
    /// The server closes it, with this error, telling the client whether
    /// to reconnect.
    WithError(String, bool),
}

/// One live subscription's forwarding task, stopped when dropped.
struct Subscribed {
    generation: u64,
    forwarder: JoinHandle<()>,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Serves one hub connection until it closes.
pub(crate) async fn run(socket: WebSocket, state: Shared, caller: Caller) {
    let (mut sink, mut stream) = socket.split();
    let mut records = Records::new(MAX_MESSAGE);
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, first_records(&mut stream, &mut records)).await;
    let rest = match first {
        Ok(Some(mut records)) => {
            let handshake = records.remove(0);
            match protocol::handshake(&handshake) {
                Ok(()) => {
                    if send(&mut sink, protocol::handshake_response(None)).await.is_err() {
                        return;
                    }
                    records
                }
                Err(error) => {
                    let _ = send(&mut sink, protocol::handshake_response(Some(&error))).await;
                    finish(sink, stream).await;
                    return;
                }
            }
        }
        // The client went away, sent something too large, or nothing.
        Ok(None) | Err(_) => {
            finish(sink, stream).await;
            return;
        }
    };
    let (outbound, inbound) = mpsc::channel(OUTBOUND_CAPACITY);
    let mut connection = Connection {
        state,
        caller,
        outbound,
        subscriptions: HashMap::new(),
        generations: 0,
    };
    let closing = connection
        .serve(&mut sink, &mut stream, &mut records, rest, inbound)
        .await;
    // Stop forwarding before saying goodbye.
    drop(connection);
    match closing {
        // Completes the close handshake the client started, if it did.
        Closing::ByClient => {
            let _ = sink.close().await;
        }
        Closing::WithError(error, allow_reconnect) => {
            tracing::debug!(%error, "closing a hub connection");
            if send(&mut sink, protocol::close(Some(&error), allow_reconnect))
                .await
                .is_ok()
            {
                finish(sink, stream).await;
            }
        }
    }
}

/// The records of the client's first text frames, up to and including
/// its handshake; `None` when it went away or broke the framing first.
async fn first_records(stream: &mut SplitStream<WebSocket>, records: &mut Records) -> Option<Vec<String>> {
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => {
                let complete = records.push(text.as_str()).ok()?;
                if !complete.is_empty() {
                    return Some(complete);
                }
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(Message::Binary(_) | Message::Close(_)) | Err(_) => return None,
        }
    }
}

async fn send(sink: &mut Sink, record: String) -> Result<(), axum::Error> {
    sink.send(Message::Text(record.into())).await
}

/// Closes the WebSocket and waits (a little) for the client's close frame.
async fn finish(mut sink: Sink, mut stream: SplitStream<WebSocket>) {
    let frame = CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    };
    if sink.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A connection past its handshake.
struct Connection {
    state: Shared,
    caller: Caller,
    /// Where subscriptions send their records.
    outbound: mpsc::Sender<Outbound>,
    subscriptions: HashMap<TaskId, Subscribed>,
    generations: u64,
}

impl Connection {
    async fn serve(
        &mut self,
        sink: &mut Sink,
        stream: &mut SplitStream<WebSocket>,
        records: &mut Records,
        first: Vec<String>,
        mut inbound: mpsc::Receiver<Outbound>,
    ) -> Closing {
        for record in first {
            if let Some(closing) = self.on_record(sink, &record).await {
                return closing;
            }
        }
        let config = &self.state.config;
        // A zero interval would make the timer panic: a millisecond is the
        // least.
        let keep_alive = config.hub_keep_alive.max(Duration::from_millis(1));
        let client_timeout = config.hub_client_timeout;
        let mut pings = tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                frame = stream.next() => {
                    last_heard = Instant::now();
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Binary(_))) => {
                            return Closing::WithError("the JSON hub protocol sends text frames only".into(), false);
                        }
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return Closing::ByClient,
                    };
                    let complete = match records.push(text.as_str()) {
                        Ok(complete) => complete,
                        Err(error) => return Closing::WithError(error, false),
                    };
                    for record in complete {
                        if let Some(closing) = self.on_record(sink, &record).await {
                            return closing;
                        }
                    }
                }
                Some(outbound) = inbound.recv() => match outbound {
                    Outbound::Record(record) => {
                        if send(sink, record).await.is_err() {
                            return Closing::ByClient;
                        }
                    }
                    Outbound::Ended(task_id, generation) => self.forget(task_id, generation),
                    Outbound::Lost(task_id, generation) => {
                        if self.subscriptions.get(&task_id).is_some_and(|s| s.generation == generation) {
                            return Closing::WithError(
                                format!("the progress of task {task_id} can no longer be followed here; reconnect and subscribe again"),
                                true,
                            );
                        }
                    }
                },
                _ = pings.tick() => {
                    if last_heard.elapsed() > client_timeout {
                        return Closing::WithError(
                            format!("the client sent nothing for {} s", client_timeout.as_secs()),
                            false,
                        );
                    }
                    if send(sink, protocol::ping()).await.is_err() {
                        return Closing::ByClient;
                    }
                }
            }
        }
    }

    /// Acts on one record; `Some` when it closes the connection.
    async fn on_record(&mut self, sink: &mut Sink, record: &str) -> Option<Closing> {
        match protocol::parse(record) {
            Err(error) => Some(Closing::WithError(error, false)),
            Ok(Incoming::Close) => Some(Closing::ByClient),
            Ok(Incoming::KeepAlive) => None,
            Ok(Incoming::StreamInvocation { invocation_id }) => {
                let error = "this hub has no streaming methods";
                send(sink, protocol::completion(&invocation_id, Some(error)))
                    .await
                    .err()
                    .map(|_| Closing::ByClient)
            }
            Ok(Incoming::Invocation {
                invocation_id,
                target,
                arguments,
            }) => {
                let outcome = self.invoke(&target, &arguments).await;
                // A call that expects no completion gets none, even a failed one.
                let invocation_id = invocation_id?;
                let record = protocol::completion(&invocation_id, outcome.err().as_deref());
                send(sink, record).await.err().map(|_| Closing::ByClient)
            }
        }
    }

    /// Runs hub method `target`.
    ///
    /// # Errors
    /// The error its completion carries.
    async fn invoke(&mut self, target: &str, arguments: &[Value]) -> Result<(), String> {
        let subscribe = target.eq_ignore_ascii_case("Subscribe");
        if !subscribe && !target.eq_ignore_ascii_case("Unsubscribe") {
            return Err(format!(
                "the hub has no method '{target}': its methods are Subscribe(taskId) and Unsubscribe(taskId)"
            ));
        }
        let task_id = match arguments {
            [Value::String(raw)] => raw
                .parse::<TaskId>()
                .map_err(|_| format!("'{raw}' is not a task id (a UUID)"))?,
            _ => {
                return Err(format!(
                    "{target} takes one argument, a task id (a string), not {}",
                    Value::from(arguments.to_vec())
                ));
            }
        };
        if subscribe {
            self.subscribe(task_id).await
        } else {
            self.subscriptions.remove(&task_id);
            Ok(())
        }
    }

    async fn subscribe(&mut self, task_id: TaskId) -> Result<(), String> {
        if self.subscriptions.contains_key(&task_id) {
            return Ok(());
        }
        let mut snapshots = snapshots(&self.caller, task_id)
            .await
            .map_err(|problem| problem.detail().to_owned())?;
        let place = self
            .state
            .subscribers
            .subscribe(task_id)
            .map_err(|problem| problem.detail().to_owned())?;
        self.generations += 1;
        let generation = self.generations;
        let outbound = self.outbound.clone();
        // Sends nothing before this call's completion: the connection
        // writes the completion before it reads what this queues.
        let forwarder = tokio::spawn(async move {
            let _place = place;
            while let Some(progress) = snapshots.next().await {
                if outbound
                    .send(Outbound::Record(protocol::invocation(PROGRESS_METHOD, &progress)))
                    .await
                    .is_err()
                {
                    return;
                }
                if progress.is_terminal() {
                    let completed = protocol::invocation(COMPLETED_METHOD, &progress);
                    if outbound.send(Outbound::Record(completed)).await.is_ok() {
                        let _ = outbound.send(Outbound::Ended(task_id, generation)).await;
                    }
                    return;
                }
            }
            let _ = outbound.send(Outbound::Lost(task_id, generation)).await;
        });
        self.subscriptions.insert(task_id, Subscribed { generation, forwarder });
        Ok(())
    }

    /// Drops subscription `generation` to `task_id` once it has ended (a
    /// newer subscription to the task stays).
    fn forget(&mut self, task_id: TaskId, generation: u64) {
        if self
            .subscriptions
            .get(&task_id)
            .is_some_and(|s| s.generation == generation)
        {
            self.subscriptions.remove(&task_id);
        }
    }
}
