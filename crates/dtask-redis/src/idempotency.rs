//! [`RedisIdempotencyStore`]: idempotency keys as Redis strings with a
//! time-to-live.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::{IdempotencyRecord, IdempotencyStore};
use dtask_core::{Error, Result, TaskId};
use redis::Script;

use crate::conn::{BACKEND, Connection, millis, redis_error};

/// Records the fingerprint, keeping the key's time-to-live.
///
/// `KEYS[1]` the key; `ARGV[1]` the fingerprint. Returns 1 when done, 0
/// when the key is not claimed.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
local record = cjson.decode(stored)
record['fingerprint'] = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
return 1
",
    )
});

/// An [`IdempotencyStore`] keeping each key as `{prefix}idem:{<key>}` (the
/// braces are part of the Redis key, its hash tag), a JSON
/// [`IdempotencyRecord`] with a time-to-live.
///
/// A claim is one round trip (`SET key record NX GET PX ttl`: set when
/// absent, otherwise return the stored record, atomically); finishing is
/// one script that keeps the time-to-live; releasing is a `DEL`.
///
/// Clones share their connection. Built by
/// [`RedisBackends`](crate::RedisBackends).
///
/// # Cancel safety
/// Each call is one command or script, applied whole or not at all: a
/// claim dropped before its answer may have claimed the key (it then
/// expires with its time-to-live).
#[derive(Clone)]
pub struct RedisIdempotencyStore {
    connection: Connection,
    prefix: String,
}

impl RedisIdempotencyStore {
    pub(crate) fn new(connection: Connection, prefix: String) -> Self {
        Self { connection, prefix }
    }

    fn key(&self, key: &str) -> String {
        format!("{}idem:{{{key}}}", self.prefix)
    }

    /// Sends `PING`.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the URL when the server does not answer.
    pub async fn ping(&self) -> Result<()> {
        self.connection.ping().await
    }
}

impl fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIdempotencyStore")
            .field("url", &self.connection.url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

#[async_trait]
impl IdempotencyStore for RedisIdempotencyStore {
    /// A `ttl` below a millisecond is rounded up to one.
    ///
    /// # Errors
    /// [`Error::Backend`] when the stored record is not valid JSON.
    async fn claim(&self, key: &str, task_id: TaskId, ttl: Duration) -> Result<Option<IdempotencyRecord>> {
        let record = IdempotencyRecord {
            task_id,
            fingerprint: None,
        };
        let json = serde_json::to_string(&record).map_err(|e| Error::backend(BACKEND, e))?;
        let mut conn = self.connection.manager.clone();
        let existing: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(json)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        existing
            .map(|stored| serde_json::from_str(&stored).map_err(|e| Error::backend(BACKEND, e)))
            .transpose()
    }

    async fn finish(&self, key: &str, fingerprint: &str) -> Result<()> {
        let mut conn = self.connection.manager.clone();
        let done: i64 = FINISH
            .key(self.key(key))
            .arg(fingerprint)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        if done == 1 {
            return Ok(());
        }
        Err(Error::not_found(format!("idempotency key `{key}`")))
    }

    async fn release(&self, key: &str) -> Result<()> {
        let mut conn = self.connection.manager.clone();
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_error)
    }

    async fn ping(&self) -> Result<()> {
        RedisIdempotencyStore::ping(self).await
    }
}
