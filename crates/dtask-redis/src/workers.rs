//! [`RedisWorkerRegistry`]: workers announcing themselves in Redis.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::{WorkerInfo, WorkerRegistry};
use dtask_core::{Error, Result};
use redis::Script;

use crate::conn::{BACKEND, Connection, millis, redis_error};

/// Records a worker: its entry with an expiry, and its id in the index,
/// scored by the server's time of expiry; drops the index's expired ids.
///
/// `KEYS[1]` the entry, `KEYS[2]` the index; `ARGV[1]` the JSON entry,
/// `ARGV[2]` the time-to-live in ms, `ARGV[3]` the id.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return 1
",
    )
});

/// The entries of the workers not expired, after dropping the expired ids.
///
/// `KEYS[1]` the index; `ARGV[1]` the prefix of entries.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local entry = redis.call('GET', ARGV[1] .. id)
  if entry then out[#out + 1] = entry end
end
return out
",
    )
});

/// A [`WorkerRegistry`] keeping each worker as `{prefix}{workers}:<id>`
/// (its JSON [`WorkerInfo`], expiring with its heartbeat) and the ids in
/// the sorted set `{prefix}{workers}` (scored by expiry; `{workers}` is a
/// literal hash tag, which keeps every key of the registry in one Redis
/// Cluster slot), so listing reads the
/// live entries without a `SCAN`. Heartbeats and listings are one script
/// each, on the server's clock.
///
/// Clones share their connection. Built by
/// [`RedisBackends`](crate::RedisBackends).
#[derive(Clone)]
pub struct RedisWorkerRegistry {
    connection: Connection,
    prefix: String,
}

impl RedisWorkerRegistry {
    pub(crate) fn new(connection: Connection, prefix: String) -> Self {
        Self { connection, prefix }
    }

    fn entry_prefix(&self) -> String {
        format!("{}{{workers}}:", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}{{workers}}", self.prefix)
    }
}

impl fmt::Debug for RedisWorkerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisWorkerRegistry")
            .field("url", &self.connection.url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

#[async_trait]
impl WorkerRegistry for RedisWorkerRegistry {
    async fn heartbeat(&self, worker: &WorkerInfo, ttl: Duration) -> Result<()> {
        let json = serde_json::to_string(worker).map_err(|e| Error::backend(BACKEND, e))?;
        let mut conn = self.connection.manager.clone();
        HEARTBEAT
            .key(format!("{}{}", self.entry_prefix(), worker.id))
            .key(self.index())
            .arg(json)
            .arg(millis(ttl))
            .arg(&worker.id)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(redis_error)
    }

    async fn deregister(&self, id: &str) -> Result<()> {
        let mut conn = self.connection.manager.clone();
        redis::pipe()
            .atomic()
            .del(format!("{}{id}", self.entry_prefix()))
            .ignore()
            .zrem(self.index(), id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_error)
    }

    /// # Errors
    /// [`Error::Backend`] when an entry is not a worker's JSON.
    async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let mut conn = self.connection.manager.clone();
        let entries: Vec<String> = LIST
            .key(self.index())
            .arg(self.entry_prefix())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        entries
            .iter()
            .map(|entry| serde_json::from_str(entry).map_err(|e| Error::backend(BACKEND, e)))
            .collect()
    }
}
