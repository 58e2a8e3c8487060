//! [`Supervisor`]: owns the connection, notices when it is lost and
//! reconnects with backoff.
//!
//! The current [`Link`] is published on a watch channel: publishers and
//! consumers take the live [`Session`] from it, or wait for one. Whoever
//! sees a failure [nudges](Supervisor::nudge) the supervisor, which also
//! checks the connection's state on every connection event and four times a
//! second, so a loss is noticed even when nobody is using the connection.

use std::sync::Arc;
use std::time::Duration;

use dtask_core::infra::redact_url;
use dtask_core::{Error, Result};
use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{AmqpConfig, backoff};
use crate::error::AmqpError;
use crate::session::Session;

/// How often the supervisor checks the connection's state when nothing
/// else wakes it.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The state of the connection.
#[derive(Clone)]
pub(crate) enum Link {
    /// Connected.
    Up(Arc<Session>),
    /// Lost; reconnecting. Holds why the last attempt failed.
    Down(Arc<str>),
}

/// What the supervisor task and its users share.
pub(crate) struct Shared {
    pub(crate) config: AmqpConfig,
    /// Every node's URL, passwords redacted.
    pub(crate) url: String,
    link: watch::Sender<Link>,
    nudge: Notify,
}

impl Shared {
    /// The URL of `node` of [`AmqpConfig::urls`], password redacted.
    fn node_url(&self, node: usize) -> String {
        redact_url(self.config.node_url(node))
    }
}

/// Owns the connection through its background task, which ends when the
/// supervisor is dropped (that is, when the last queue handle, stream and
/// delivery holding it are gone).
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Connects to the first node of [`AmqpConfig::urls`] that answers,
    /// giving each [`AmqpConfig::connect_timeout`], then supervises the
    /// connection.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a URL that does not parse (every node's is
    /// checked first); [`AmqpError::Connect`] or
    /// [`AmqpError::ConnectTimeout`], the last node's failure, when none
    /// answered (each node's is logged as a warning).
    pub(crate) async fn start(config: AmqpConfig) -> Result<Self> {
        for url in config.urls() {
            if let Err(error) = url.parse::<lapin::uri::AMQPUri>() {
                return Err(Error::invalid("amqp url", format!("{}: {error}", redact_url(url))));
            }
        }
        let url = config.redacted_url();
        let nodes = config.urls().count();
        let mut failure = None;
        let mut connected = None;
        for node in 0..nodes {
            let error = match tokio::time::timeout(config.connect_timeout, Session::open(&config, node, 1)).await {
                Ok(Ok(session)) => {
                    connected = Some(session);
                    break;
                }
                Ok(Err(source)) => AmqpError::Connect {
                    url: url.clone(),
                    source,
                },
                Err(_) => {
                    let timeout = config.connect_timeout;
                    AmqpError::ConnectTimeout {
                        url: url.clone(),
                        timeout,
                    }
                }
            };
            if nodes > 1 {
                let node = redact_url(config.node_url(node));
                tracing::warn!(%node, %error, "cannot connect to this RabbitMQ node");
            }
            failure = Some(error);
        }
        let Some(session) = connected else {
            let timeout = config.connect_timeout;
            return Err(failure.unwrap_or(AmqpError::ConnectTimeout { url, timeout }).into());
        };
        let (link, _) = watch::channel(Link::Up(Arc::new(session)));
        let shared = Arc::new(Shared {
            config,
            url,
            link,
            nudge: Notify::new(),
        });
        let task = tokio::spawn(supervise(Arc::clone(&shared)));
        Ok(Self { shared, task })
    }

    pub(crate) fn config(&self) -> &AmqpConfig {
        &self.shared.config
    }

    pub(crate) fn url(&self) -> &str {
        &self.shared.url
    }

    /// Asks the supervisor to check the connection now.
    pub(crate) fn nudge(&self) {
        self.shared.nudge.notify_one();
    }

    /// The live session, if the connection is up right now.
    pub(crate) fn current(&self) -> Result<Arc<Session>, Arc<str>> {
        match &*self.shared.link.borrow() {
            Link::Up(session) if session.is_connected() => Ok(Arc::clone(session)),
            Link::Up(_) => Err("the connection is closing".into()),
            Link::Down(error) => Err(Arc::clone(error)),
        }
    }

    /// The live session, waiting for a reconnection until `deadline`.
    ///
    /// # Errors
    /// [`AmqpError::Disconnected`] when the deadline passes first.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn session(&self, deadline: Instant) -> Result<Arc<Session>> {
        let started = Instant::now();
        let mut link = self.shared.link.subscribe();
        loop {
            let last_error = match self.current() {
                Ok(session) => return Ok(session),
                Err(error) => error,
            };
            self.nudge();
            link.borrow_and_update();
            // Checked again: the state may have changed before the
            // subscription was marked seen.
            if let Ok(session) = self.current() {
                return Ok(session);
            }
            if tokio::time::timeout_at(deadline, link.changed()).await.is_err() {
                return Err(AmqpError::Disconnected {
                    url: self.shared.url.clone(),
                    waited: started.elapsed(),
                    last_error: last_error.to_string(),
                }
                .into());
            }
        }
    }

    /// The live session, waiting as long as it takes.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn session_eventually(&self) -> Arc<Session> {
        let mut link = self.shared.link.subscribe();
        loop {
            if let Ok(session) = self.current() {
                return session;
            }
            self.nudge();
            link.borrow_and_update();
            if let Ok(session) = self.current() {
                return session;
            }
            // The sender lives in `self.shared`: `changed` cannot fail.
            let _ = link.changed().await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches the current session; when it is lost, reconnects with backoff
/// and publishes the new one. Runs until aborted.
async fn supervise(shared: Arc<Shared>) {
    loop {
        let Link::Up(session) = shared.link.borrow().clone() else {
            // Only this task ever publishes `Down`, and it always ends with
            // `Up`; kept total for safety.
            reconnect(&shared, 0, 0).await;
            continue;
        };
        until_lost(&shared, &session).await;
        let node = shared.node_url(session.node);
        tracing::warn!(%node, "lost the connection to RabbitMQ; reconnecting");
        shared.link.send_replace(Link::Down("the connection was lost".into()));
        let (generation, lost) = (session.generation, session.node);
        drop(session);
        reconnect(&shared, generation, lost + 1).await;
    }
}

/// Returns once `session`'s connection is no longer up.
async fn until_lost(shared: &Shared, session: &Session) {
    let mut events = Some(session.connection.events_listener());
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    while session.is_connected() {
        tokio::select! {
            () = shared.nudge.notified() => {}
            event = next_event(&mut events) => {
                if event.is_none() {
                    events = None;
                }
            }
            _ = tick.tick() => {}
        }
    }
}

/// The next connection event; pending forever once the stream ended.
async fn next_event<S: futures::Stream<Item = lapin::Event> + Unpin>(events: &mut Option<S>) -> Option<lapin::Event> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

/// Connects again, pausing with backoff between attempts, and publishes the
/// new session. Returns only once connected.
///
/// The attempts go round the nodes of [`AmqpConfig::urls`], starting with
/// `first_node` (taken modulo their number): after losing a node of a
/// cluster, the first attempt goes to the next one.
async fn reconnect(shared: &Shared, generation: u64, first_node: usize) {
    let config = &shared.config;
    let nodes = config.urls().count();
    let mut attempt = 0u32;
    let mut node = first_node % nodes;
    loop {
        tokio::time::sleep(backoff(config, attempt)).await;
        attempt = attempt.saturating_add(1);
        let opening = Session::open(config, node, generation + 1);
        let error = match tokio::time::timeout(config.connect_timeout, opening).await {
            Ok(Ok(session)) => {
                tracing::info!(node = %shared.node_url(node), attempt, "reconnected to RabbitMQ");
                shared.link.send_replace(Link::Up(Arc::new(session)));
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer after {:?}", config.connect_timeout),
        };
        let url = shared.node_url(node);
        tracing::warn!(node = %url, attempt, %error, "reconnecting to RabbitMQ failed");
        shared.link.send_replace(Link::Down(format!("{url}: {error}").into()));
        node = (node + 1) % nodes;
    }
}
