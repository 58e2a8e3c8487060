//! [`RedisStateStore`]: saga snapshots in Redis hashes, fenced by lock
//! tokens.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dtask_core::infra::{SagaStateStore, StoredState};
use dtask_core::{Error, Format, Payload, Result, TaskId};
use redis::{Script, ScriptInvocation};

use crate::conn::{Commands, Connection, millis, redis_error, script_pipeline};

/// The Lua function `save(hash, fence, format, bytes, ms)`: replaces the
/// snapshot unless a larger fencing token wrote before, and gives the hash
/// an expiry of `ms` (0: none). Returns false when saved, the stored fence
/// when refused. Fences are compared as decimal strings (longer is
/// larger), so every `u64` is exact.
pub(crate) const SAVE_FUNCTION: &str = r"
local function save(hash, fence, format, bytes, ms)
  local current = redis.call('HGET', hash, 'fence')
  if current and (#current > #fence or (#current == #fence and current > fence)) then
    return current
  end
  redis.call('HSET', hash, 'fence', fence, 'format', format, 'bytes', bytes)
  if ms ~= '0' then redis.call('PEXPIRE', hash, ms) end
  return false
end
";

/// Saves a snapshot: `KEYS[1]` the hash; `ARGV` as [`SAVE_FUNCTION`]'s
/// arguments after it. Returns nil when saved, the stored fence when
/// refused.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SAVE_FUNCTION}return save(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])"
    ))
});

/// A [`SagaStateStore`] keeping each task's latest snapshot in the hash
/// `{prefix}state:{<task id>}` (fields `fence`, `format`, `bytes`; the
/// braces around the task id are part of the key, its Redis Cluster hash
/// tag).
///
/// A save is one round trip (a script that compares the fencing token and
/// writes), and `save_many` one for its whole batch (a pipeline; on a
/// Redis Cluster one save per state, sent at once); a load
/// is one `HMGET`. Only encoded payloads can be stored: an
/// in-memory payload is [`Error::Unsupported`] (configure a serializer).
/// Snapshots may be given an expiry after their last save
/// ([`RedisConfig::with_state_expiry`](crate::RedisConfig::with_state_expiry));
/// by default they stay until deleted.
///
/// Clones share their connection. Built by
/// [`RedisBackends`](crate::RedisBackends).
///
/// # Cancel safety
/// Each call is one command or script, applied whole or not at all: a call
/// dropped before its answer may or may not have been applied.
#[derive(Clone)]
pub struct RedisStateStore {
    connection: Connection,
    prefix: String,
    expiry: Option<Duration>,
}

impl RedisStateStore {
    pub(crate) fn new(connection: Connection, prefix: String, expiry: Option<Duration>) -> Self {
        Self {
            connection,
            prefix,
            expiry,
        }
    }

    pub(crate) fn key(&self, task_id: TaskId) -> String {
        format!("{}state:{{{task_id}}}", self.prefix)
    }

    /// The command connection, shared with the other backends.
    pub(crate) fn commands(&self) -> Commands {
        self.connection.manager.clone()
    }

    /// Sends `PING`.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the URL when the server does not answer.
    pub async fn ping(&self) -> Result<()> {
        self.connection.ping().await
    }
}

impl fmt::Debug for RedisStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStateStore")
            .field("url", &self.connection.url)
            .field("prefix", &self.prefix)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// The name a format is stored under (its serde name).
fn format_name(format: Format) -> Result<String> {
    match serde_json::to_value(format) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        _ => Err(Error::invalid("format", format!("{format} has no storable name"))),
    }
}

/// The state a hash's `fence`, `format` and `bytes` fields hold; `None`
/// when there is none.
///
/// # Errors
/// [`Error::Invalid`] for a format this version does not know.
pub(crate) fn stored(
    fence: Option<u64>,
    format: Option<String>,
    bytes: Option<Vec<u8>>,
) -> Result<Option<StoredState>> {
    let (Some(fence), Some(format), Some(bytes)) = (fence, format, bytes) else {
        return Ok(None);
    };
    let payload = Payload::Encoded {
        format: parse_format(&format)?,
        bytes: Bytes::from(bytes),
    };
    Ok(Some(StoredState { fence, payload }))
}

fn parse_format(name: &str) -> Result<Format> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|e| Error::invalid("stored format", format!("`{name}`: {e}")))
}

impl RedisStateStore {
    /// The `SAVE` script's invocation saving `state` as `task_id`'s.
    fn save_invocation(&self, task_id: TaskId, state: &StoredState) -> Result<ScriptInvocation<'static>> {
        let mut invocation = SAVE.prepare_invoke();
        self.add_save(&mut invocation, task_id, state)?;
        Ok(invocation)
    }

    /// Adds the key and the arguments of [`SAVE_FUNCTION`] saving `state`
    /// as `task_id`'s to `invocation`.
    pub(crate) fn add_save(
        &self,
        invocation: &mut ScriptInvocation<'static>,
        task_id: TaskId,
        state: &StoredState,
    ) -> Result<()> {
        let (format, bytes) = state.payload.encoded()?;
        invocation
            .key(self.key(task_id))
            .arg(state.fence)
            .arg(format_name(format)?)
            .arg(&bytes[..])
            .arg(self.expiry.map_or(0, millis));
        Ok(())
    }
}

/// What the `SAVE` script's answer says: `None` when saved, the stored
/// fence when `state`'s was older.
fn saved(state: &StoredState, refused: Option<String>) -> Result<()> {
    match refused {
        None => Ok(()),
        Some(current) => Err(fenced(state, &current)),
    }
}

/// The error of a save of `state` refused for the `current` stored fence.
pub(crate) fn fenced(state: &StoredState, current: &str) -> Error {
    Error::Fenced {
        presented: state.fence,
        current: current.parse().unwrap_or(u64::MAX),
    }
}

#[async_trait]
impl SagaStateStore for RedisStateStore {
    /// # Errors
    /// [`Error::Fenced`] when a larger fencing token saved before;
    /// [`Error::Unsupported`] for an in-memory payload.
    async fn save(&self, task_id: TaskId, state: StoredState) -> Result<()> {
        let mut conn = self.connection.manager.clone();
        let refused: Option<String> = self
            .save_invocation(task_id, &state)?
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        saved(&state, refused)
    }

    /// One pipeline for every state; when it fails as a whole, each state
    /// is saved on its own, so that each gets its own result. On a Redis
    /// Cluster, which refuses a pipeline spanning slots, each is saved on
    /// its own, all at once.
    async fn save_many(&self, states: Vec<(TaskId, StoredState)>) -> Vec<Result<()>> {
        if self.connection.manager.is_cluster() {
            let saves = states.into_iter().map(|(task_id, state)| self.save(task_id, state));
            return futures::future::join_all(saves).await;
        }
        let invocations: Result<Vec<_>> = (states.iter())
            .map(|(task_id, state)| self.save_invocation(*task_id, state))
            .collect();
        if let Ok(invocations) = invocations {
            let answers: redis::RedisResult<Vec<Option<String>>> = script_pipeline(&SAVE, &invocations)
                .query_async(&mut self.connection.manager.clone())
                .await;
            if let Ok(answers) = answers {
                return (states.iter())
                    .zip(answers)
                    .map(|((_, state), refused)| saved(state, refused))
                    .collect();
            }
        }
        let mut results = Vec::with_capacity(states.len());
        for (task_id, state) in states {
            results.push(self.save(task_id, state).await);
        }
        results
    }

    async fn load(&self, task_id: TaskId) -> Result<Option<StoredState>> {
        let mut conn = self.connection.manager.clone();
        let (fence, format, bytes): (Option<u64>, Option<String>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.key(task_id))
            .arg(&["fence", "format", "bytes"])
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        stored(fence, format, bytes)
    }

    async fn delete(&self, task_id: TaskId) -> Result<()> {
        let mut conn = self.connection.manager.clone();
        redis::cmd("DEL")
            .arg(self.key(task_id))
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_error)
    }

    async fn ping(&self) -> Result<()> {
        RedisStateStore::ping(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_through_their_names() {
        let name = format_name(Format::Json).unwrap();
        assert_eq!(name, "json");
        assert_eq!(parse_format(&name).unwrap(), Format::Json);
        assert!(parse_format("klingon").is_err());
    }
}
