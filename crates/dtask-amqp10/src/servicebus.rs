//! Azure Service Bus: SAS tokens put on the `$cbs` node (claims-based
//! security) before a node is used and again before they expire, and
//! message locks renewed through the queue's `$management` node.
//!
//! Written to Microsoft's documentation ("AMQP 1.0 in Azure Service Bus:
//! request-response-based operations", "Message transfers, locks, and
//! settlement"); not tested against Service Bus here.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{ApplicationProperties, Message};
use fe2o3_amqp::types::primitives::{Array, OrderedMap, SimpleValue, Timestamp, Value};
use fe2o3_amqp_cbs::client::CbsClient;
use fe2o3_amqp_cbs::token::CbsToken;
use fe2o3_amqp_management::client::MgmtClient;
use fe2o3_amqp_management::error::Error as MgmtError;
use fe2o3_amqp_management::request::Request;
use fe2o3_amqp_management::response::Response;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::error::Amqp10Error;
use crate::sas::{SAS_TOKEN_TYPE, sas_token};

/// The tokens of one connection: its `$cbs` client and the nodes it has
/// authorized.
pub(crate) struct ServiceBusAuth {
    host: String,
    key_name: String,
    key: String,
    lifetime: Duration,
    cbs: Mutex<CbsClient>,
    authorized: std::sync::Mutex<HashSet<String>>,
}

impl ServiceBusAuth {
    /// Attaches the `$cbs` client on `session`.
    pub(crate) async fn attach(
        session: &mut SessionHandle<()>,
        host: &str,
        key_name: &str,
        key: &str,
        lifetime: Duration,
    ) -> Result<Self, Amqp10Error> {
        let cbs = CbsClient::attach(session).await.map_err(|error| Amqp10Error::Attach {
            address: "$cbs".into(),
            reason: error.to_string(),
        })?;
        Ok(Self {
            host: host.to_owned(),
            key_name: key_name.to_owned(),
            key: key.to_owned(),
            lifetime,
            cbs: Mutex::new(cbs),
            authorized: std::sync::Mutex::default(),
        })
    }

    /// Puts a token for the node `address` (a queue, its dead-letter
    /// sub-queue, its `$management` node), once per connection; the
    /// [`refresh`](Self::refresh) task puts it again before it expires.
    pub(crate) async fn authorize(&self, address: &str) -> Result<(), Amqp10Error> {
        if self.lock_authorized().contains(address) {
            return Ok(());
        }
        self.put(address).await?;
        self.lock_authorized().insert(address.to_owned());
        Ok(())
    }

    /// Puts a fresh token for every node authorized so far.
    pub(crate) async fn refresh(&self) -> Result<(), Amqp10Error> {
        let addresses: Vec<String> = self.lock_authorized().iter().cloned().collect();
        for address in addresses {
            self.put(&address).await?;
        }
        Ok(())
    }

    /// How often [`refresh`](Self::refresh) runs: four fifths of the
    /// token's lifetime.
    pub(crate) fn refresh_interval(&self) -> Duration {
        self.lifetime.mul_f64(0.8).max(Duration::from_secs(1))
    }

    fn lock_authorized(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.authorized
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn put(&self, address: &str) -> Result<(), Amqp10Error> {
        let audience = format!("sb://{}/{}", self.host, address);
        let expiry = SystemTime::now()
            .checked_add(self.lifetime)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let token =
            sas_token(&audience, &self.key_name, &self.key, expiry.as_secs()).map_err(|error| Amqp10Error::Token {
                audience: audience.clone(),
                reason: error.to_string(),
            })?;
        let expires = Timestamp::from_milliseconds(i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX));
        let token = CbsToken::new(token, SAS_TOKEN_TYPE, Some(expires));
        self.cbs
            .lock()
            .await
            .put_token(audience.clone(), token)
            .await
            .map_err(|error| Amqp10Error::Token {
                audience,
                reason: error.to_string(),
            })
    }
}

/// The `$management` node of a queue, for lock renewals.
pub(crate) struct Management {
    client: Mutex<MgmtClient>,
}

impl Management {
    /// Attaches a request-response pair to `<queue>/$management`.
    pub(crate) async fn attach(session: &mut SessionHandle<()>, address: &str) -> Result<Self, Amqp10Error> {
        let client = MgmtClient::builder()
            .management_node_address(address)
            .client_node_addr(format!("dtask-{}", Uuid::new_v4().simple()))
            .attach(session)
            .await
            .map_err(|error| Amqp10Error::Attach {
                address: address.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(Self {
            client: Mutex::new(client),
        })
    }

    /// Renews the lock of the delivery tagged `lock_token`, received on
    /// the link named `link_name`.
    pub(crate) async fn renew_lock(&self, lock_token: Uuid, link_name: &str) -> Result<(), MgmtError> {
        let request = RenewLock {
            lock_tokens: vec![lock_token],
            link_name: link_name.to_owned(),
        };
        let _renewed: RenewLockResponse = self.client.lock().await.call(request).await?;
        Ok(())
    }
}

/// The lock token of a Service Bus delivery: its delivery tag, a .NET
/// `Guid` in its own byte order (the first three fields little-endian).
pub(crate) fn lock_token(delivery_tag: &[u8]) -> Option<Uuid> {
    let bytes: [u8; 16] = delivery_tag.try_into().ok()?;
    Some(Uuid::from_bytes_le(bytes))
}

/// `com.microsoft:renew-lock`: the body a map with `lock-tokens`, an array
/// of UUIDs; `associated-link-name` the receiving link.
struct RenewLock {
    lock_tokens: Vec<Uuid>,
    link_name: String,
}

impl Request for RenewLock {
    const OPERATION: &'static str = "com.microsoft:renew-lock";
    type Response = RenewLockResponse;
    type Body = Value;

    fn encode_application_properties(&mut self) -> Option<ApplicationProperties> {
        let mut properties = ApplicationProperties::default();
        properties.0.insert(
            "associated-link-name".to_owned(),
            SimpleValue::String(self.link_name.clone()),
        );
        Some(properties)
    }

    fn encode_body(self) -> Self::Body {
        let tokens = self
            .lock_tokens
            .into_iter()
            .map(|token| Value::Uuid(token.into_bytes().into()))
            .collect();
        let mut body = OrderedMap::new();
        body.insert(Value::String("lock-tokens".into()), Value::Array(Array(tokens)));
        Value::Map(body)
    }
}

/// The answer to a renewal: status 200 and the new expirations, which are
/// not needed (the next renewal is on a timer).
#[derive(Debug)]
struct RenewLockResponse;

impl Response for RenewLockResponse {
    const STATUS_CODE: u16 = 200;
    type Body = Option<Value>;
    type Error = MgmtError;

    fn decode_message(_message: Message<Self::Body>) -> Result<Self, Self::Error> {
        Ok(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_token_is_the_delivery_tag_in_dotnet_guid_order() {
        let tag = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        ];
        assert_eq!(
            lock_token(&tag).map(|u| u.to_string()),
            Some("00112233-4455-6677-8899-aabbccddeeff".to_owned())
        );
        assert_eq!(lock_token(&[1, 2, 3]), None);
    }

    #[test]
    fn the_renew_lock_request_names_its_operation_link_and_tokens() {
        let token = Uuid::new_v4();
        let message = RenewLock {
            lock_tokens: vec![token],
            link_name: "receiver-1".into(),
        }
        .into_message();
        let properties = message.application_properties.unwrap();
        assert_eq!(
            properties.0.get("operation"),
            Some(&SimpleValue::String("com.microsoft:renew-lock".into()))
        );
        assert_eq!(
            properties.0.get("associated-link-name"),
            Some(&SimpleValue::String("receiver-1".into()))
        );
        let Value::Map(body) = message.body else {
            panic!("the body is a map")
        };
        let Some(Value::Array(Array(tokens))) = body.get(&Value::String("lock-tokens".into())) else {
            panic!("lock-tokens is an array")
        };
        assert_eq!(tokens, &vec![Value::Uuid(token.into_bytes().into())]);
    }
}
