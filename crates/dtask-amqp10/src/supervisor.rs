//! [`Supervisor`]: owns the [`Connection`], notices when it is lost and
//! replaces it with backoff.
//!
//! The current [`Link`] is published on a watch channel: publishers and
//! consumers take the live connection from it, or wait for one. Whoever
//! sees a failure [nudges](Supervisor::nudge) the supervisor, which also
//! checks the connection four times a second, so a loss is noticed even
//! when nobody is using it. On Service Bus, a task per connection puts its
//! tokens again before they expire; a failure there counts as a loss.

use std::sync::{Arc, Weak};
use std::time::Duration;

use dtask_core::Result;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Amqp10Config, backoff};
use crate::connection::Connection;
use crate::error::Amqp10Error;

/// How often the supervisor checks the connection when nothing else wakes
/// it.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The state of the connection.
#[derive(Clone)]
pub(crate) enum Link {
    /// Connected.
    Up(Arc<Connection>),
    /// Lost; reconnecting. Holds why the last attempt failed.
    Down(Arc<str>),
}

/// What the supervisor task and its users share.
pub(crate) struct Shared {
    pub(crate) config: Amqp10Config,
    /// The URL, credentials redacted.
    pub(crate) url: String,
    link: watch::Sender<Link>,
    nudge: Notify,
}

/// Owns the connection through its background task, which ends when the
/// supervisor is dropped.
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Connects, giving it [`Amqp10Config::connect_timeout`], then
    /// supervises the connection.
    ///
    /// # Errors
    /// [`Amqp10Error::Connect`] or [`Amqp10Error::ConnectTimeout`].
    pub(crate) async fn start(config: Amqp10Config) -> Result<Self> {
        let url = config.redacted_url();
        let connection = open(&config, 1).await?;
        let (link, _) = watch::channel(Link::Up(Arc::clone(&connection)));
        let shared = Arc::new(Shared {
            config,
            url,
            link,
            nudge: Notify::new(),
        });
        spawn_token_refresh(&shared, &connection);
        let task = tokio::spawn(supervise(Arc::clone(&shared)));
        Ok(Self { shared, task })
    }

    pub(crate) fn config(&self) -> &Amqp10Config {
        &self.shared.config
    }

    pub(crate) fn url(&self) -> &str {
        &self.shared.url
    }

    /// Asks the supervisor to check the connection now.
    pub(crate) fn nudge(&self) {
        self.shared.nudge.notify_one();
    }

    /// The live connection, if it is up right now.
    pub(crate) fn current(&self) -> Result<Arc<Connection>, Arc<str>> {
        match &*self.shared.link.borrow() {
            Link::Up(connection) if !connection.is_lost() => Ok(Arc::clone(connection)),
            Link::Up(_) => Err("the connection was lost".into()),
            Link::Down(error) => Err(Arc::clone(error)),
        }
    }

    /// The live connection, waiting for a reconnection until `deadline`.
    ///
    /// # Errors
    /// [`Amqp10Error::Disconnected`] when the deadline passes first.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn connection(&self, deadline: Instant) -> Result<Arc<Connection>> {
        let started = Instant::now();
        let mut link = self.shared.link.subscribe();
        loop {
            let last_error = match self.current() {
                Ok(connection) => return Ok(connection),
                Err(error) => error,
            };
            self.nudge();
            link.borrow_and_update();
            if let Ok(connection) = self.current() {
                return Ok(connection);
            }
            if tokio::time::timeout_at(deadline, link.changed()).await.is_err() {
                return Err(Amqp10Error::Disconnected {
                    url: self.shared.url.clone(),
                    waited: started.elapsed(),
                    last_error: last_error.to_string(),
                }
                .into());
            }
        }
    }

    /// The live connection, waiting as long as it takes.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn connection_eventually(&self) -> Arc<Connection> {
        let mut link = self.shared.link.subscribe();
        loop {
            if let Ok(connection) = self.current() {
                return connection;
            }
            self.nudge();
            link.borrow_and_update();
            if let Ok(connection) = self.current() {
                return connection;
            }
            // The sender lives in `self.shared`: `changed` cannot fail.
            let _ = link.changed().await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.task.abort();
        if let Link::Up(connection) = &*self.shared.link.borrow() {
            connection.mark_lost();
        }
    }
}

/// Opens connection number `generation` within the connect timeout.
async fn open(config: &Amqp10Config, generation: u64) -> Result<Arc<Connection>, Amqp10Error> {
    match tokio::time::timeout(config.connect_timeout, Connection::open(config, generation)).await {
        Ok(Ok(connection)) => Ok(Arc::new(connection)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Amqp10Error::ConnectTimeout {
            url: config.redacted_url(),
            timeout: config.connect_timeout,
        }),
    }
}

/// On Service Bus, puts `connection`'s tokens again every four fifths of
/// their lifetime, for as long as the connection lives; a failure marks it
/// lost, so the supervisor replaces it (and the new one authorizes afresh).
fn spawn_token_refresh(shared: &Arc<Shared>, connection: &Arc<Connection>) {
    let Some(interval) = connection.auth.as_ref().map(|auth| auth.refresh_interval()) else {
        return;
    };
    let (shared, connection): (Weak<Shared>, Weak<Connection>) = (Arc::downgrade(shared), Arc::downgrade(connection));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(live) = connection.upgrade().filter(|c| !c.is_lost()) else {
                return;
            };
            let Some(auth) = live.auth.as_ref() else { return };
            if let Err(error) = auth.refresh().await {
                tracing::warn!(%error, "refreshing the Service Bus tokens failed; reconnecting");
                live.mark_lost();
                if let Some(shared) = shared.upgrade() {
                    shared.nudge.notify_one();
                }
                return;
            }
        }
    });
}

/// Watches the current connection; when it is lost, reconnects with
/// backoff and publishes the new one. Runs until aborted.
async fn supervise(shared: Arc<Shared>) {
    loop {
        let link = shared.link.borrow().clone();
        let connection = match link {
            Link::Up(connection) => connection,
            Link::Down(_) => {
                // Only this task publishes `Down`, always followed by `Up`.
                reconnect(&shared, 0).await;
                continue;
            }
        };
        until_lost(&shared, &connection).await;
        tracing::warn!(url = %shared.url, "lost the AMQP 1.0 connection; reconnecting");
        shared.link.send_replace(Link::Down("the connection was lost".into()));
        connection.close().await;
        let generation = connection.generation;
        drop(connection);
        reconnect(&shared, generation).await;
    }
}

/// Returns once `connection` is lost.
async fn until_lost(shared: &Shared, connection: &Connection) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    while !connection.is_lost() {
        tokio::select! {
            () = shared.nudge.notified() => {}
            _ = tick.tick() => {}
        }
    }
}

/// Connects again, pausing with backoff between attempts, and publishes the
/// new connection. Returns only once connected.
async fn reconnect(shared: &Arc<Shared>, generation: u64) {
    let config = &shared.config;
    let mut attempt = 0u32;
    loop {
        tokio::time::sleep(backoff(config, attempt)).await;
        attempt = attempt.saturating_add(1);
        match open(config, generation + 1).await {
            Ok(connection) => {
                tracing::info!(url = %shared.url, attempt, "reconnected to the AMQP 1.0 broker");
                spawn_token_refresh(shared, &connection);
                shared.link.send_replace(Link::Up(connection));
                return;
            }
            Err(error) => {
                tracing::warn!(url = %shared.url, attempt, %error, "reconnecting to the AMQP 1.0 broker failed");
                shared.link.send_replace(Link::Down(error.to_string().into()));
            }
        }
    }
}
