//! [`Session`]: one live connection, its shared publisher channel and the
//! queues declared on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use dtask_core::Result;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::OnceCell;

use crate::config::AmqpConfig;
use crate::error::client;
use crate::topology;

/// One connection to the broker, replaced as a whole by the supervisor
/// when it is lost.
pub(crate) struct Session {
    /// Counts connections: 1 for the first, 2 after a reconnection...
    pub(crate) generation: u64,
    /// Which node of [`AmqpConfig::urls`] this connection goes to.
    pub(crate) node: usize,
    pub(crate) connection: Connection,
    /// The channel every publish goes through, in confirm mode. lapin
    /// channels are safe to share: publishes pipeline on it, each with its
    /// own confirmation.
    publisher: RwLock<Arc<Channel>>,
    /// Held while the publisher channel is replaced.
    reopening: tokio::sync::Mutex<()>,
    /// The queues declared on this connection (or being declared).
    declared: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
}

impl Session {
    /// Connects to `node` of [`AmqpConfig::urls`] and opens the publisher
    /// channel.
    pub(crate) async fn open(config: &AmqpConfig, node: usize, generation: u64) -> lapin::Result<Self> {
        let properties = ConnectionProperties::default().with_connection_name(config.connection_name.clone().into());
        let connection = Connection::connect(config.node_url(node), properties).await?;
        let publisher = publisher_channel(&connection).await?;
        Ok(Self {
            generation,
            node,
            connection,
            publisher: RwLock::new(Arc::new(publisher)),
            reopening: tokio::sync::Mutex::new(()),
            declared: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the connection is still up.
    pub(crate) fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// The publisher channel, opened again if the broker closed it.
    pub(crate) async fn publisher(&self) -> lapin::Result<Arc<Channel>> {
        if let Some(channel) = self.open_publisher() {
            return Ok(channel);
        }
        let _reopening = self.reopening.lock().await;
        if let Some(channel) = self.open_publisher() {
            return Ok(channel);
        }
        let channel = Arc::new(publisher_channel(&self.connection).await?);
        *self.publisher.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&channel);
        Ok(channel)
    }

    fn open_publisher(&self) -> Option<Arc<Channel>> {
        let channel = self.publisher.read().unwrap_or_else(PoisonError::into_inner);
        channel.status().connected().then(|| Arc::clone(&channel))
    }

    /// Declares `queue` and its dead-letter queue once on this connection,
    /// on a channel of their own (a refusal closes the channel it happens
    /// on). Concurrent callers share one declaration.
    ///
    /// # Errors
    /// As [`topology::declare`]; the next call tries again.
    pub(crate) async fn declare(&self, queue: &str, max_deliveries: u32) -> Result<()> {
        let cell = {
            let mut declared = self.declared.lock().unwrap_or_else(PoisonError::into_inner);
            match declared.get(queue) {
                Some(cell) => Arc::clone(cell),
                None => Arc::clone(declared.entry(queue.to_owned()).or_default()),
            }
        };
        cell.get_or_try_init(|| async {
            let channel = self.connection.create_channel().await.map_err(client)?;
            // Dropping the channel closes it.
            topology::declare(&channel, queue, max_deliveries).await
        })
        .await?;
        Ok(())
    }

    /// Forgets that `queue` was declared (it has been deleted since).
    pub(crate) fn forget(&self, queue: &str) {
        self.declared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(queue);
    }
}

/// A new channel in confirm mode.
async fn publisher_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}
