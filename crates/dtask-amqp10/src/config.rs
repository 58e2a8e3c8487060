//! [`Amqp10Config`]: where the broker is, which [`Broker`] it is, and how
//! [`Amqp10Queue`](crate::Amqp10Queue) uses it.
//!
//! It is read from one string ([`Amqp10Config::parse`], or
//! [`Amqp10Config::from_env`] reading [`URL_ENV`]): either a URL,
//! `amqp://user:password@host:port` or `amqps://...`, or an Azure Service
//! Bus connection string,
//! `Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=NAME;SharedAccessKey=KEY`.

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

/// The URL of a RabbitMQ (with its AMQP 1.0 plugin) on this machine, with
/// its default user.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672";

/// The environment variable [`Amqp10Config::from_env`] reads.
pub const URL_ENV: &str = "DTASK_AMQP10_URL";

/// The port of `amqp://`.
const AMQP_PORT: u16 = 5672;
/// The port of `amqps://` (and of Service Bus).
const AMQPS_PORT: u16 = 5671;
/// The domain of Service Bus namespaces.
const SERVICE_BUS_DOMAIN: &str = ".servicebus.windows.net";

/// Which broker is at the other end: it decides the node addresses, how a
/// delivery is handed back and dead-lettered, and the authentication.
/// Derived from the URL (see [`Amqp10Config::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Broker {
    /// RabbitMQ 3.x with its AMQP 1.0 plugin: queues are `/queue/NAME`
    /// (a durable queue declared on first use), a hand-back is a
    /// republished copy that carries the delivery count, dead letters are
    /// copies sent to `/queue/NAME.dead-letter`. Tested.
    RabbitMq,
    /// Azure Service Bus: queues are their names, dead letters
    /// `NAME/$DeadLetterQueue`; SAS tokens through `$cbs`, peek-lock
    /// receive, `modified` to abandon, `rejected` with
    /// `com.microsoft:dead-letter` to dead-letter, locks renewed through
    /// `$management`. Written to Microsoft's documentation; not tested
    /// here.
    ServiceBus,
    /// Any other AMQP 1.0 broker: queues are their names, a hand-back is
    /// `modified` with `delivery-failed`, dead letters are copies sent to
    /// `NAME.dead-letter`. Not tested here.
    Generic,
}

impl Broker {
    /// The name used in the `broker=` URL parameter.
    pub fn name(self) -> &'static str {
        match self {
            Self::RabbitMq => "rabbitmq",
            Self::ServiceBus => "servicebus",
            Self::Generic => "generic",
        }
    }

    fn parse(name: &str) -> Result<Self, ConfigError> {
        match name.to_ascii_lowercase().as_str() {
            "rabbitmq" => Ok(Self::RabbitMq),
            "servicebus" => Ok(Self::ServiceBus),
            "generic" => Ok(Self::Generic),
            _ => Err(ConfigError::UnknownBroker(name.to_owned())),
        }
    }
}

/// How the connection authenticates.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// SASL PLAIN with a user name and password (from the URL).
    Plain {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// SASL ANONYMOUS (a URL without a user).
    Anonymous,
    /// Service Bus: SASL ANONYMOUS, then a SAS token signed with this key
    /// put on `$cbs` for each node before it is used, and again before the
    /// token expires.
    SharedAccessKey {
        /// `SharedAccessKeyName`.
        key_name: String,
        /// `SharedAccessKey`, used as it is written (its UTF-8 bytes are
        /// the HMAC key, as Microsoft's samples do).
        key: String,
    },
}

impl fmt::Debug for Credentials {
    /// Secrets show as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain { user, .. } => write!(f, "Plain({user}:***)"),
            Self::Anonymous => f.write_str("Anonymous"),
            Self::SharedAccessKey { key_name, .. } => write!(f, "SharedAccessKey({key_name}:***)"),
        }
    }
}

/// How an [`Amqp10Queue`](crate::Amqp10Queue) connects to its broker and
/// uses it. Start from [`Amqp10Config::parse`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use dtask_amqp10::{Amqp10Config, Broker};
///
/// let config = Amqp10Config::parse("amqp://guest:guest@127.0.0.1:5672")?
///     .with_prefetch(32)
///     .with_reconnect_timeout(Duration::from_secs(60));
/// assert_eq!(config.broker, Broker::RabbitMq);
///
/// let bus = Amqp10Config::parse(
///     "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey=c2VjcmV0",
/// )?;
/// assert_eq!(bus.broker, Broker::ServiceBus);
/// assert_eq!((bus.host.as_str(), bus.port, bus.tls), ("contoso.servicebus.windows.net", 5671, true));
/// # Ok::<(), dtask_amqp10::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Amqp10Config {
    /// Which broker (see [`Broker`]).
    pub broker: Broker,
    /// The host name (also the TLS server name and the AMQP `hostname`).
    pub host: String,
    /// The port.
    pub port: u16,
    /// Whether the connection uses TLS (`amqps://`, Service Bus).
    pub tls: bool,
    /// How it authenticates.
    pub credentials: Credentials,
    /// The AMQP container id of the connection. Default `dtask-<uuid>`.
    pub container_id: String,
    /// How many deliveries each consume stream may hold unsettled (the
    /// link credit it grants). Default 16.
    pub prefetch: u32,
    /// How many deliveries a message gets at most: one handed back (nacked
    /// or dropped) on its `max_deliveries`-th delivery, or arriving with a
    /// higher count (after connection losses), is moved to the dead
    /// letters instead, with the reason. RabbitMQ's AMQP 1.0 queues have
    /// no delivery limit of their own; a Service Bus queue's
    /// `MaxDeliveryCount` applies too. Default 5.
    pub max_deliveries: u32,
    /// How long opening a connection may take. Default 5 s.
    pub connect_timeout: Duration,
    /// The first pause before reconnecting; it doubles after each failed
    /// attempt, up to [`reconnect_max_backoff`](Self::reconnect_max_backoff).
    /// Default 100 ms.
    pub reconnect_initial_backoff: Duration,
    /// The longest pause between reconnection attempts. Default 10 s.
    pub reconnect_max_backoff: Duration,
    /// How long a publish (or the first `consume`) waits for a lost
    /// connection to come back before it fails. Default 30 s.
    pub reconnect_timeout: Duration,
    /// How long a publish waits for the broker's outcome of a message (and
    /// a settlement for its frame to go out). Default 10 s.
    pub outcome_timeout: Duration,
    /// Service Bus: how long a SAS token is valid; it is put again after
    /// four fifths of it. Default 1 h.
    pub token_lifetime: Duration,
    /// Service Bus: how often the lock of a held delivery is renewed
    /// (keep it well under the queue's lock duration, 60 s by default).
    /// Default 20 s.
    pub lock_renewal_interval: Duration,
}

impl Amqp10Config {
    /// Reads `url`: an `amqp://` or `amqps://` URL, or a Service Bus
    /// connection string. The broker is [`Broker::ServiceBus`] for a
    /// connection string or a host under `servicebus.windows.net`,
    /// [`Broker::RabbitMq`] otherwise; a `broker=rabbitmq|servicebus|generic`
    /// query parameter chooses it explicitly (`amqp://host:5672?broker=generic`).
    /// The user and password of a URL are percent-decoded.
    ///
    /// # Errors
    /// A [`ConfigError`] saying what is malformed (never showing a secret).
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let url = url.trim();
        if is_connection_string(url) {
            return parse_connection_string(url);
        }
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("amqp://") || lower.starts_with("amqps://")) {
            return Err(ConfigError::Unrecognised);
        }
        parse_url(url)
    }

    /// [`parse`](Self::parse)s the variable [`URL_ENV`]
    /// (`DTASK_AMQP10_URL`), or [`DEFAULT_URL`] when it is unset.
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var(URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::parse(&url),
            _ => Self::parse(DEFAULT_URL),
        }
    }

    fn with_endpoint(broker: Broker, host: String, port: u16, tls: bool, credentials: Credentials) -> Self {
        Self {
            broker,
            host,
            port,
            tls,
            credentials,
            container_id: format!("dtask-{}", uuid::Uuid::new_v4().simple()),
            prefetch: 16,
            max_deliveries: 5,
            connect_timeout: Duration::from_secs(5),
            reconnect_initial_backoff: Duration::from_millis(100),
            reconnect_max_backoff: Duration::from_secs(10),
            reconnect_timeout: Duration::from_secs(30),
            outcome_timeout: Duration::from_secs(10),
            token_lifetime: Duration::from_secs(3600),
            lock_renewal_interval: Duration::from_secs(20),
        }
    }

    /// Sets [`broker`](Self::broker).
    #[must_use]
    pub fn with_broker(mut self, broker: Broker) -> Self {
        self.broker = broker;
        self
    }

    /// Sets [`prefetch`](Self::prefetch) (at least 1 is used).
    #[must_use]
    pub fn with_prefetch(mut self, prefetch: u32) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Sets [`max_deliveries`](Self::max_deliveries) (at least 1 is used).
    #[must_use]
    pub fn with_max_deliveries(mut self, max_deliveries: u32) -> Self {
        self.max_deliveries = max_deliveries;
        self
    }

    /// Sets [`container_id`](Self::container_id).
    #[must_use]
    pub fn with_container_id(mut self, id: impl Into<String>) -> Self {
        self.container_id = id.into();
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`reconnect_initial_backoff`](Self::reconnect_initial_backoff)
    /// and [`reconnect_max_backoff`](Self::reconnect_max_backoff).
    #[must_use]
    pub fn with_reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_initial_backoff = initial;
        self.reconnect_max_backoff = max;
        self
    }

    /// Sets [`reconnect_timeout`](Self::reconnect_timeout).
    #[must_use]
    pub fn with_reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.reconnect_timeout = timeout;
        self
    }

    /// Sets [`outcome_timeout`](Self::outcome_timeout).
    #[must_use]
    pub fn with_outcome_timeout(mut self, timeout: Duration) -> Self {
        self.outcome_timeout = timeout;
        self
    }

    /// Sets [`lock_renewal_interval`](Self::lock_renewal_interval).
    #[must_use]
    pub fn with_lock_renewal_interval(mut self, interval: Duration) -> Self {
        self.lock_renewal_interval = interval;
        self
    }

    /// The broker's URL without credentials, e.g. `amqp://127.0.0.1:5672`,
    /// fit for logs and error messages.
    pub fn redacted_url(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        let user = match &self.credentials {
            Credentials::Plain { user, .. } => format!("{user}:***@"),
            Credentials::SharedAccessKey { key_name, .. } => format!("{key_name}:***@"),
            Credentials::Anonymous => String::new(),
        };
        format!("{scheme}://{user}{}:{}", self.host, self.port)
    }

    /// The URL the client opens: scheme, host and port (the credentials go
    /// through the SASL profile).
    pub(crate) fn connect_url(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for Amqp10Config {
    /// The credentials show redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Amqp10Config")
            .field("url", &self.redacted_url())
            .field("broker", &self.broker)
            .field("credentials", &self.credentials)
            .field("container_id", &self.container_id)
            .field("prefetch", &self.prefetch)
            .field("max_deliveries", &self.max_deliveries)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_initial_backoff", &self.reconnect_initial_backoff)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .field("reconnect_timeout", &self.reconnect_timeout)
            .field("outcome_timeout", &self.outcome_timeout)
            .field("token_lifetime", &self.token_lifetime)
            .field("lock_renewal_interval", &self.lock_renewal_interval)
            .finish()
    }
}

impl Default for Amqp10Config {
    /// The local RabbitMQ at [`DEFAULT_URL`].
    fn default() -> Self {
        Self::with_endpoint(
            Broker::RabbitMq,
            "127.0.0.1".into(),
            AMQP_PORT,
            false,
            Credentials::Plain {
                user: "guest".into(),
                password: "guest".into(),
            },
        )
    }
}

/// Whether `text` is `Key=Value;...` with an `Endpoint` key (a URL's
/// scheme comes before any `=`).
fn is_connection_string(text: &str) -> bool {
    text.split(';').any(|part| {
        part.split_once('=')
            .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("endpoint"))
    })
}

fn parse_url(text: &str) -> Result<Amqp10Config, ConfigError> {
    let url = url::Url::parse(text).map_err(|error| ConfigError::Url(error.to_string()))?;
    let tls = url.scheme().eq_ignore_ascii_case("amqps");
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or(ConfigError::NoHost)?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port().unwrap_or(if tls { AMQPS_PORT } else { AMQP_PORT });
    let credentials = if url.username().is_empty() {
        Credentials::Anonymous
    } else {
        Credentials::Plain {
            user: decode(url.username()),
            password: decode(url.password().unwrap_or("")),
        }
    };
    let mut broker = if host.to_ascii_lowercase().ends_with(SERVICE_BUS_DOMAIN) {
        Broker::ServiceBus
    } else {
        Broker::RabbitMq
    };
    for (key, value) in url.query_pairs() {
        if key == "broker" {
            broker = Broker::parse(&value)?;
        }
    }
    Ok(Amqp10Config::with_endpoint(broker, host, port, tls, credentials))
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_connection_string(text: &str) -> Result<Amqp10Config, ConfigError> {
    let (mut endpoint, mut key_name, mut key) = (None, None, None);
    for part in text.split(';').map(str::trim).filter(|part| !part.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| ConfigError::NotKeyValue(part.chars().take(40).collect()))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "endpoint" => endpoint = Some(value),
            "sharedaccesskeyname" => key_name = Some(value),
            "sharedaccesskey" => key = Some(value),
            // The queues come from the tasks; a connection string scoped
            // to one entity names it here, which changes nothing.
            "entitypath" => {}
            _ => return Err(ConfigError::UnsupportedKey(name.trim().to_owned())),
        }
    }
    let endpoint = endpoint
        .filter(|e| !e.is_empty())
        .ok_or(ConfigError::MissingKey("Endpoint"))?;
    let key_name = key_name
        .filter(|k| !k.is_empty())
        .ok_or(ConfigError::MissingKey("SharedAccessKeyName"))?;
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or(ConfigError::MissingKey("SharedAccessKey"))?;
    let host = endpoint
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("sb://"))
        .and_then(|_| endpoint.get(5..))
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|host| !host.is_empty() && !host.contains(['/', '@', '?', '#', ' ']))
        .ok_or_else(|| ConfigError::Endpoint(endpoint.to_owned()))?;
    let (host, port) = match host.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse().map_err(|_| ConfigError::Endpoint(endpoint.to_owned()))?,
        ),
        None => (host, AMQPS_PORT),
    };
    Ok(Amqp10Config::with_endpoint(
        Broker::ServiceBus,
        host.to_owned(),
        port,
        true,
        Credentials::SharedAccessKey {
            key_name: key_name.to_owned(),
            key: key.to_owned(),
        },
    ))
}

/// The backoff before reconnection attempt `attempt` (0 for the first):
/// `initial` doubled each time, at most `max`.
pub(crate) fn backoff(config: &Amqp10Config, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(20));
    config
        .reconnect_initial_backoff
        .saturating_mul(factor)
        .min(config.reconnect_max_backoff)
}

/// The instant `timeout` from now; about thirty years from now for longer
/// timeouts (which mean "forever" and would overflow).
pub(crate) fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    tokio::time::Instant::now() + timeout.min(FOREVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rabbitmq_url_gives_plain_credentials_and_the_default_port() {
        let config = Amqp10Config::parse("amqp://guest:gu%40st@127.0.0.1").unwrap();
        assert_eq!(config.broker, Broker::RabbitMq);
        assert_eq!(
            (config.host.as_str(), config.port, config.tls),
            ("127.0.0.1", 5672, false)
        );
        assert_eq!(
            config.credentials,
            Credentials::Plain {
                user: "guest".into(),
                password: "gu@st".into()
            }
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("gu@st") && shown.contains("guest:***"), "{shown}");
        let tls = Amqp10Config::parse("AMQPS://broker.example:6000").unwrap();
        assert_eq!(
            (tls.port, tls.tls, tls.credentials),
            (6000, true, Credentials::Anonymous)
        );
        assert_eq!(Amqp10Config::parse("amqps://broker.example").unwrap().port, 5671);
    }

    #[test]
    fn the_broker_follows_the_host_or_the_query() {
        let bus = Amqp10Config::parse("amqps://app:key@contoso.servicebus.windows.net").unwrap();
        assert_eq!(bus.broker, Broker::ServiceBus);
        let generic = Amqp10Config::parse("amqp://127.0.0.1:5672?broker=generic").unwrap();
        assert_eq!(generic.broker, Broker::Generic);
        assert_eq!(
            Amqp10Config::parse("amqp://h?broker=kafka"),
            Err(ConfigError::UnknownBroker("kafka".into()))
        );
    }

    #[test]
    fn a_connection_string_is_read_whatever_the_case_and_order() {
        let config = Amqp10Config::parse(
            " SharedAccessKey=abc=def= ; endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;EntityPath=q ",
        )
        .unwrap();
        assert_eq!(config.broker, Broker::ServiceBus);
        assert_eq!(
            (config.host.as_str(), config.port, config.tls),
            ("ns.servicebus.windows.net", 5671, true)
        );
        assert_eq!(
            config.credentials,
            Credentials::SharedAccessKey {
                key_name: "Root".into(),
                key: "abc=def=".into()
            }
        );
        assert!(!format!("{config:?}").contains("abc=def="));
    }

    #[test]
    fn malformed_connection_strings_say_what_is_wrong() {
        let cases = [
            (
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root",
                ConfigError::MissingKey("SharedAccessKey"),
            ),
            (
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=k",
                ConfigError::MissingKey("SharedAccessKeyName"),
            ),
            (
                "Endpoint=;SharedAccessKeyName=Root;SharedAccessKey=k",
                ConfigError::MissingKey("Endpoint"),
            ),
            (
                "Endpoint=https://ns/;SharedAccessKeyName=Root;SharedAccessKey=k",
                ConfigError::Endpoint("https://ns/".into()),
            ),
            (
                "Endpoint=sb:///;SharedAccessKeyName=Root;SharedAccessKey=k",
                ConfigError::Endpoint("sb:///".into()),
            ),
            (
                "Endpoint=sb://ns/;SharedAccessKeyName=Root;garbage",
                ConfigError::NotKeyValue("garbage".into()),
            ),
            (
                "Endpoint=sb://ns/;SharedAccessSignature=x;SharedAccessKeyName=R;SharedAccessKey=k",
                ConfigError::UnsupportedKey("SharedAccessSignature".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Amqp10Config::parse(text), Err(expected), "{text}");
        }
        assert_eq!(Amqp10Config::parse("http://x"), Err(ConfigError::Unrecognised));
        assert!(matches!(
            Amqp10Config::parse("amqp://"),
            Err(ConfigError::NoHost | ConfigError::Url(_))
        ));
        let error = Amqp10Config::parse("Endpoint=sb://ns/;SharedAccessKeyName=R;SharedAccessKey=s3cr3t;bad");
        assert!(!error.unwrap_err().to_string().contains("s3cr3t"));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let config = Amqp10Config::default();
        let pauses: Vec<_> = (0..9).map(|n| backoff(&config, n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    }
}
