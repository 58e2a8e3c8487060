//! [`Connection`]: one live AMQP connection, with the session its
//! publishers and management links share, its senders (one per node,
//! attached on first use), and on Service Bus its `$cbs` client.
//!
//! Each consume stream and each dead-letter listing begins a session of its
//! own on the connection ([`Connection::begin_session`]): ending it hands
//! every delivery it left unsettled back to the queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::SenderSettleMode;
use fe2o3_amqp::types::messaging::Target;
use fe2o3_amqp::{Sender, Session};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{Amqp10Config, Broker, Credentials};
use crate::error::Amqp10Error;
use crate::servicebus::{Management, ServiceBusAuth};
use crate::topology;

/// How long the connection may stay silent before the peer considers it
/// dead (AMQP idle timeout; heartbeats keep it alive).
const IDLE_TIMEOUT_MS: u32 = 30_000;

/// A sender shared by the publishes to one node.
pub(crate) type SharedSender = Arc<Mutex<Sender>>;

/// One live connection.
pub(crate) struct Connection {
    /// Counts the connections of one supervisor, from 1.
    pub(crate) generation: u64,
    pub(crate) broker: Broker,
    handle: Mutex<ConnectionHandle<()>>,
    session: Mutex<SessionHandle<()>>,
    senders: std::sync::Mutex<HashMap<String, SharedSender>>,
    management: std::sync::Mutex<HashMap<String, Arc<Management>>>,
    pub(crate) auth: Option<ServiceBusAuth>,
    lost: AtomicBool,
    /// Cancelled once the connection is known to be lost: what waits on it
    /// (an outcome, a send) gives up at once.
    lost_signal: CancellationToken,
}

impl Connection {
    /// Opens a connection and its shared session (and on Service Bus the
    /// `$cbs` client).
    pub(crate) async fn open(config: &Amqp10Config, generation: u64) -> Result<Self, Amqp10Error> {
        let failed = |reason: String| Amqp10Error::Connect {
            url: config.redacted_url(),
            reason,
        };
        let profile = match &config.credentials {
            Credentials::Plain { user, password } => SaslProfile::Plain {
                username: user.clone(),
                password: password.clone(),
            },
            Credentials::Anonymous | Credentials::SharedAccessKey { .. } => SaslProfile::Anonymous,
        };
        let url = config.connect_url();
        let builder = fe2o3_amqp::Connection::builder()
            .container_id(config.container_id.clone())
            .hostname(config.host.as_str())
            .sasl_profile(profile)
            .idle_time_out(IDLE_TIMEOUT_MS);
        let opened = if config.tls {
            builder
                .alt_tls_establishment(true)
                .rustls_connector(tls_connector().map_err(|e| failed(e.to_string()))?)
                .open(url.as_str())
                .await
        } else {
            builder.open(url.as_str()).await
        };
        let mut handle = opened.map_err(|error| failed(error.to_string()))?;
        let mut session = Session::begin(&mut handle)
            .await
            .map_err(|error| failed(format!("beginning a session: {error}")))?;
        let auth = match &config.credentials {
            Credentials::SharedAccessKey { key_name, key } => {
                Some(ServiceBusAuth::attach(&mut session, &config.host, key_name, key, config.token_lifetime).await?)
            }
            _ => None,
        };
        Ok(Self {
            generation,
            broker: config.broker,
            handle: Mutex::new(handle),
            session: Mutex::new(session),
            senders: std::sync::Mutex::default(),
            management: std::sync::Mutex::default(),
            auth,
            lost: AtomicBool::new(false),
            lost_signal: CancellationToken::new(),
        })
    }

    /// Whether the connection is known to be gone (closed by either side,
    /// or its shared session ended).
    pub(crate) fn is_lost(&self) -> bool {
        if self.lost.load(Ordering::Acquire) {
            return true;
        }
        let closed = self.handle.try_lock().is_ok_and(|handle| handle.is_closed())
            || self.session.try_lock().is_ok_and(|session| session.is_ended());
        if closed {
            self.mark_lost();
        }
        closed
    }

    /// Marks the connection lost (its supervisor then replaces it).
    pub(crate) fn mark_lost(&self) {
        self.lost.store(true, Ordering::Release);
        self.lost_signal.cancel();
    }

    /// Completes once the connection is known to be lost.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn lost(&self) {
        self.lost_signal.cancelled().await;
    }

    /// Closes the connection (best effort: it may be gone already).
    pub(crate) async fn close(&self) {
        self.mark_lost();
        let mut handle = self.handle.lock().await;
        if !handle.is_closed() {
            // Closing a connection that broke reports its error; it is
            // being replaced either way.
            let _ = handle.close().await;
        }
    }

    /// Begins a session of its own on the connection.
    pub(crate) async fn begin_session(&self) -> Result<SessionHandle<()>, Amqp10Error> {
        let mut handle = self.handle.lock().await;
        Session::begin(&mut handle).await.map_err(|error| {
            self.mark_lost();
            Amqp10Error::Attach {
                address: "(session)".into(),
                reason: error.to_string(),
            }
        })
    }

    /// Puts a Service Bus token for `address` (nothing elsewhere).
    pub(crate) async fn authorize(&self, address: &str) -> Result<(), Amqp10Error> {
        match &self.auth {
            Some(auth) => auth.authorize(address).await,
            None => Ok(()),
        }
    }

    /// The sender to `address`, attached on first use.
    pub(crate) async fn sender(&self, address: &str) -> Result<SharedSender, Amqp10Error> {
        if let Some(sender) = self.lock_senders().get(address) {
            return Ok(Arc::clone(sender));
        }
        self.authorize(address).await?;
        let target = Target::builder()
            .address(address)
            .durable(topology::durability(self.broker))
            .build();
        let mut session = self.session.lock().await;
        // Another publish may have attached it meanwhile.
        if let Some(sender) = self.lock_senders().get(address) {
            return Ok(Arc::clone(sender));
        }
        let sender = Sender::builder()
            .name(format!("dtask-sender-{}", uuid::Uuid::new_v4().simple()))
            .target(target)
            .sender_settle_mode(SenderSettleMode::Unsettled)
            .attach(&mut session)
            .await
            .map_err(|error| Amqp10Error::Attach {
                address: address.to_owned(),
                reason: error.to_string(),
            })?;
        let sender = Arc::new(Mutex::new(sender));
        self.lock_senders().insert(address.to_owned(), Arc::clone(&sender));
        Ok(sender)
    }

    /// Forgets the sender to `address` (it failed; the next publish
    /// attaches a new one).
    pub(crate) fn forget_sender(&self, address: &str) {
        self.lock_senders().remove(address);
    }

    /// The `$management` node of `queue` (Service Bus), attached on first
    /// use.
    pub(crate) async fn management(&self, queue: &str) -> Result<Arc<Management>, Amqp10Error> {
        let address = topology::management_address(queue);
        if let Some(management) = self.lock_management().get(&address) {
            return Ok(Arc::clone(management));
        }
        self.authorize(&address).await?;
        let mut session = self.session.lock().await;
        let management = Arc::new(Management::attach(&mut session, &address).await?);
        self.lock_management().insert(address, Arc::clone(&management));
        Ok(management)
    }

    /// Forgets the `$management` node of `queue`.
    pub(crate) fn forget_management(&self, queue: &str) {
        self.lock_management().remove(&topology::management_address(queue));
    }

    fn lock_senders(&self) -> std::sync::MutexGuard<'_, HashMap<String, SharedSender>> {
        self.senders.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_management(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Management>>> {
        self.management
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The TLS configuration of `amqps://`: the Mozilla roots of
/// `webpki-roots`, and ring as the one crypto provider (so no process-wide
/// default provider is needed).
fn tls_connector() -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
