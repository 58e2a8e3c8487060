//! Following a task's Server-Sent Events: the raw stream of progress
//! snapshots, and a follower that reconnects until the terminal one.

use std::collections::VecDeque;
use std::time::Duration;

use dtask::TaskProgress;
use reqwest::Response;

use super::sse::{SseEvent, SseParser};
use super::{ApiClient, ClientError};

/// How many times in a row a broken stream is reopened.
const MAX_RECONNECTS: u32 = 5;

/// The `progress` events of one SSE response, decoded.
#[derive(Debug)]
pub struct ProgressEvents {
    response: Response,
    parser: SseParser,
    pending: VecDeque<SseEvent>,
}

impl ProgressEvents {
    pub(super) fn new(response: Response) -> Self {
        Self {
            response,
            parser: SseParser::new(),
            pending: VecDeque::new(),
        }
    }

    /// The next snapshot, or `None` when the server ended the stream.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] for an undecodable snapshot,
    /// [`ClientError::Http`] when the connection breaks.
    ///
    /// # Cancel safety
    /// Cancel safe: a snapshot is only taken out of the buffer when it is
    /// returned.
    pub async fn next(&mut self) -> Result<Option<TaskProgress>, ClientError> {
        loop {
            while let Some(event) = self.pending.pop_front() {
                if event.event == "progress" {
                    return serde_json::from_str(&event.data)
                        .map(Some)
                        .map_err(|e| ClientError::Protocol(format!("undecodable progress event: {e}")));
                }
            }
            let url = self.response.url().to_string();
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|source| ClientError::transport(&url, &url, source))?;
            match chunk {
                Some(bytes) => self.pending.extend(self.parser.push(&bytes)),
                None => return Ok(None),
            }
        }
    }

    /// The last event id received (a reconnect sends it as `Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id()
    }
}

/// Follows one task to its terminal snapshot across broken connections.
#[derive(Debug)]
pub struct TaskFollower<'a> {
    client: &'a ApiClient,
    link: String,
    events: Option<ProgressEvents>,
    last_event_id: Option<String>,
    last: Option<TaskProgress>,
    failures: u32,
}

impl<'a> TaskFollower<'a> {
    pub(super) fn new(client: &'a ApiClient, link: &str) -> Self {
        Self {
            client,
            link: link.to_owned(),
            events: None,
            last_event_id: None,
            last: None,
            failures: 0,
        }
    }

    /// The next snapshot; `None` after the terminal one.
    ///
    /// # Errors
    /// The stream's errors once reconnecting failed
    /// five times in a row; problems (e.g. an unknown task)
    /// at once.
    ///
    /// # Cancel safety
    /// Cancel safe: no snapshot is lost; an interrupted reconnect is simply
    /// tried again by the next call.
    pub async fn next(&mut self) -> Result<Option<TaskProgress>, ClientError> {
        loop {
            if self.last.as_ref().is_some_and(TaskProgress::is_terminal) {
                return Ok(None);
            }
            let events = match &mut self.events {
                Some(events) => events,
                None => {
                    let opened = self.client.events(&self.link, self.last_event_id.as_deref()).await;
                    match opened {
                        Ok(events) => self.events.insert(events),
                        Err(error) => {
                            let retriable = is_transport(&error);
                            self.failed(error, retriable).await?;
                            continue;
                        }
                    }
                }
            };
            match events.next().await {
                Ok(Some(progress)) => {
                    self.last_event_id = events.last_event_id().map(str::to_owned);
                    self.failures = 0;
                    self.last = Some(progress.clone());
                    return Ok(Some(progress));
                }
                Ok(None) => {
                    self.events = None;
                    let ended = ClientError::Protocol("the progress stream ended before the task did".into());
                    self.failed(ended, true).await?;
                }
                Err(error) => {
                    self.events = None;
                    let retriable = is_transport(&error);
                    self.failed(error, retriable).await?;
                }
            }
        }
    }

    /// The last snapshot returned.
    pub fn last(&self) -> Option<&TaskProgress> {
        self.last.as_ref()
    }

    async fn failed(&mut self, error: ClientError, retriable: bool) -> Result<(), ClientError> {
        self.failures += 1;
        if !retriable || self.failures > MAX_RECONNECTS {
            return Err(error);
        }
        tracing::debug!(%error, attempt = self.failures, "reopening the progress stream");
        tokio::time::sleep(Duration::from_millis(200 * u64::from(self.failures))).await;
        Ok(())
    }
}

fn is_transport(error: &ClientError) -> bool {
    matches!(error, ClientError::Http { .. } | ClientError::Unreachable { .. })
}
