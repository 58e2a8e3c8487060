//! The Lua scripts that settle, reclaim and renew entries atomically, and
//! their typed wrappers.
//!
//! Each script checks who owns an entry before it touches it, so a consumer
//! that lost an entry to another (after the visibility timeout) never acks,
//! moves or copies it: a message is never lost nor duplicated by a
//! settlement. No script trims a stream: an entry leaves its stream only
//! when it is settled.

use std::sync::LazyLock;
use std::time::Duration;

use dtask_redis::connection::Commands;
use redis::{RedisResult, Script, Value};

use crate::config::RedisStreamsConfig;
use crate::entry::{FieldValue, RawEntry, into_bytes, into_u64, parse_entry};

/// The keys and names one queue's scripts work on.
#[derive(Debug, Clone)]
pub(crate) struct QueueKeys {
    /// The queue's name.
    pub(crate) queue: String,
    /// The stream's key.
    pub(crate) stream: String,
    /// The dead-letter stream's key.
    pub(crate) dead: String,
}

impl QueueKeys {
    pub(crate) fn new(config: &RedisStreamsConfig, queue: &str) -> Self {
        Self {
            queue: queue.to_owned(),
            stream: config.stream_key(queue),
            dead: config.dead_letter_key(queue),
        }
    }
}

/// Lua helper shared by the scripts: the fields of `entry` without the
/// bookkeeping ones, followed by `deliveries`.
const COPY_FIELDS: &str = r"
local function copy_fields(fields, deliveries)
  local out = {}
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name ~= 'deliveries' and name ~= 'reason' and name ~= 'source_id' then
      out[#out + 1] = name
      out[#out + 1] = fields[i + 1]
    end
  end
  out[#out + 1] = 'deliveries'
  out[#out + 1] = deliveries
  return out
end
local function dead_letter(dead_key, id, fields, deliveries, reason)
  local out = copy_fields(fields, deliveries)
  out[#out + 1] = 'reason'
  out[#out + 1] = reason
  out[#out + 1] = 'source_id'
  out[#out + 1] = id
  redis.call('XADD', dead_key, '*', unpack(out))
end
";

/// KEYS: stream. ARGV: max backlog, then the entry's field-value pairs.
/// Adds the entry unless the stream holds `max backlog` entries already;
/// returns 1 when added, 0 when full (nothing done).
const PUBLISH: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return 1
";

/// KEYS: stream. ARGV: group, consumer, ids... Acks and deletes each entry
/// still pending on this consumer; returns the ids that are not (settled
/// already, or reclaimed by another consumer), left untouched.
const ACK: &str = r"
local refused = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
  else
    refused[#refused + 1] = ARGV[i]
  end
end
return refused
";

/// KEYS: stream, dead. ARGV: group, consumer, id, deliveries, mode
/// (`requeue` | `dead`), reason. Returns 0 when the entry is not pending on
/// this consumer (nothing done), 1 requeued, 2 dead-lettered, 3 acked
/// because the entry itself was gone (deleted by hand).
const SETTLE: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if #e == 0 then return 3 end
if ARGV[5] == 'dead' then
  dead_letter(KEYS[2], ARGV[3], e[1][2], ARGV[4], ARGV[6])
  return 2
end
redis.call('XADD', KEYS[1], '*', unpack(copy_fields(e[1][2], ARGV[4])))
return 1
";

/// KEYS: stream, dead. ARGV: group, consumer, min idle ms, cursor, count,
/// max deliveries, visibility timeout (text, for the reason).
/// Returns `{cursor, {{id, fields, deliveries}...}, dead, deleted}`:
/// deliveries counts this one; entries past the maximum are moved to the
/// dead-letter stream instead of being returned.
const RECLAIM: &str = r"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out, dead = {}, 0
local max = tonumber(ARGV[6])
for _, e in ipairs(r[2]) do
  local id, fields = e[1], e[2]
  if fields then
    local prior = 0
    for i = 1, #fields, 2 do
      if fields[i] == 'deliveries' then prior = tonumber(fields[i + 1]) or 0 end
    end
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local claims = 1
    if #p > 0 then claims = tonumber(p[1][4]) end
    local total = prior + claims
    if total > max then
      local reason = 'not settled within the visibility timeout (' .. ARGV[7] .. ') after '
        .. (total - 1) .. ' deliveries (max ' .. max .. ')'
      dead_letter(KEYS[2], id, fields, total - 1, reason)
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
      dead = dead + 1
    else
      out[#out + 1] = {id, fields, total}
    end
  end
end
local deleted = 0
if r[3] then deleted = #r[3] end
return {r[1], out, dead, deleted}
";

/// KEYS: stream. ARGV: group, consumer, ids... Resets the idle time of the
/// given entries still pending on this consumer; returns the ids that are
/// not (settled or taken over).
const RENEW: &str = r"
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
";

/// KEYS: stream. ARGV: group, min idle ms, this consumer. Deletes the
/// group's consumers that hold nothing and have been idle that long (left
/// by processes that ended); returns how many.
const PRUNE: &str = r"
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
local removed = 0
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
";

static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{COPY_FIELDS}{SETTLE}")));
static RECLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{COPY_FIELDS}{RECLAIM}")));
static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));
static PUBLISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH));
static ACK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ACK));
static PRUNE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PRUNE));

/// What a settlement does with a delivered entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settlement {
    /// Re-add a copy whose `deliveries` field is `deliveries`.
    Requeue { deliveries: u32 },
    /// Move it to the dead-letter stream.
    DeadLetter { deliveries: u32, reason: String },
}

/// What [`settle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The entry was not pending on this consumer: nothing was done.
    NotOurs,
    /// A copy was re-added to the stream.
    Requeued,
    /// A copy was added to the dead-letter stream.
    DeadLettered,
    /// The entry had been deleted (by hand: nothing trims the streams);
    /// its pending record was dropped.
    Gone,
}

/// Settles entry `id` of `keys` as `settlement`, atomically.
pub(crate) async fn settle(
    conn: &mut Commands,
    config: &RedisStreamsConfig,
    keys: &QueueKeys,
    id: &str,
    settlement: &Settlement,
) -> RedisResult<Settled> {
    let (deliveries, mode, reason) = match settlement {
        Settlement::Requeue { deliveries } => (*deliveries, "requeue", ""),
        Settlement::DeadLetter { deliveries, reason } => (*deliveries, "dead", reason.as_str()),
    };
    let outcome: i64 = SETTLE_SCRIPT
        .key(&keys.stream)
        .key(&keys.dead)
        .arg(&config.group)
        .arg(&config.consumer)
        .arg(id)
        .arg(deliveries)
        .arg(mode)
        .arg(reason)
        .invoke_async(conn)
        .await?;
    Ok(match outcome {
        1 => Settled::Requeued,
        2 => Settled::DeadLettered,
        3 => Settled::Gone,
        _ => Settled::NotOurs,
    })
}

/// One page of [`reclaim`].
#[derive(Debug, Default)]
pub(crate) struct Reclaimed {
    /// Where the next page starts; `0-0` once the whole list was seen.
    pub(crate) cursor: String,
    /// Claimed entries and their delivery count (this one included).
    pub(crate) entries: Vec<(RawEntry, u32)>,
    /// How many were dead-lettered for having been delivered too often.
    pub(crate) dead_lettered: u64,
    /// How many pending entries had been deleted from the stream (by
    /// hand: nothing trims it).
    pub(crate) deleted: u64,
}

/// Claims up to `read_count` entries idle for longer than the visibility
/// timeout, from `cursor` on.
pub(crate) async fn reclaim(
    conn: &mut Commands,
    config: &RedisStreamsConfig,
    keys: &QueueKeys,
    cursor: &str,
) -> RedisResult<Reclaimed> {
    let reply: Value = RECLAIM_SCRIPT
        .key(&keys.stream)
        .key(&keys.dead)
        .arg(&config.group)
        .arg(&config.consumer)
        .arg(millis(config.visibility_timeout))
        .arg(cursor)
        .arg(config.read_count.max(1))
        .arg(config.max_deliveries)
        .arg(format!("{:?}", config.visibility_timeout))
        .invoke_async(conn)
        .await?;
    Ok(parse_reclaimed(reply))
}

fn parse_reclaimed(reply: Value) -> Reclaimed {
    let Value::Array(parts) = reply else {
        return Reclaimed::default();
    };
    let mut parts = parts.into_iter();
    let cursor = parts
        .next()
        .and_then(into_bytes)
        .and_then(|c| String::from_utf8(c).ok())
        .unwrap_or_else(|| "0-0".to_owned());
    let mut entries = Vec::new();
    if let Some(Value::Array(list)) = parts.next() {
        for item in list {
            let Value::Array(triple) = item else { continue };
            let mut triple = triple.into_iter();
            let (Some(id), Some(fields), Some(count)) = (triple.next(), triple.next(), triple.next()) else {
                continue;
            };
            if let Ok(entry) = parse_entry(Value::Array(vec![id, fields])) {
                let count = into_u64(count).map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX));
                entries.push((entry, count));
            }
        }
    }
    let dead_lettered = parts.next().and_then(into_u64).unwrap_or(0);
    let deleted = parts.next().and_then(into_u64).unwrap_or(0);
    Reclaimed {
        cursor,
        entries,
        dead_lettered,
        deleted,
    }
}

/// Adds an entry of `fields` to the stream of `keys` unless it holds
/// [`max_backlog`](RedisStreamsConfig::max_backlog) entries; `false` when
/// it was full and nothing was added.
pub(crate) async fn publish(
    conn: &mut Commands,
    config: &RedisStreamsConfig,
    keys: &QueueKeys,
    fields: &[(&'static str, FieldValue<'_>)],
) -> RedisResult<bool> {
    let mut invocation = PUBLISH_SCRIPT.key(&keys.stream);
    invocation.arg(config.max_backlog);
    for (name, value) in fields {
        invocation.arg(*name).arg(value);
    }
    let added: i64 = invocation.invoke_async(conn).await?;
    Ok(added == 1)
}

/// [`publish`] for each entry of `entries`, in one pipeline; says, for
/// each, whether it was added (not refused as the stream is full).
pub(crate) async fn publish_many(
    conn: &mut Commands,
    config: &RedisStreamsConfig,
    keys: &QueueKeys,
    entries: &[Vec<(&'static str, FieldValue<'_>)>],
) -> RedisResult<Vec<bool>> {
    let mut pipe = redis::pipe();
    // Loaded in the same pipeline: the invocations find it even after a
    // `SCRIPT FLUSH`.
    pipe.load_script(&PUBLISH_SCRIPT).ignore();
    for fields in entries {
        let mut invocation = PUBLISH_SCRIPT.key(&keys.stream);
        invocation.arg(config.max_backlog);
        for (name, value) in fields {
            invocation.arg(*name).arg(value);
        }
        pipe.invoke_script(&invocation);
    }
    let added: Vec<i64> = pipe.query_async(conn).await?;
    Ok(added.into_iter().map(|added| added == 1).collect())
}

/// Acks and deletes each of `ids` still pending on this consumer; returns
/// those that are not (left untouched).
pub(crate) async fn ack(
    conn: &mut Commands,
    config: &RedisStreamsConfig,
    keys: &QueueKeys,
    ids: &[&str],
) -> RedisResult<Vec<String>> {
    let mut invocation = ACK_SCRIPT.key(&keys.stream);
    invocation.arg(&config.group).arg(&config.consumer).arg(ids);
    invocation.invoke_async(conn).await
}

/// Resets the idle time of `ids` where still pending on this consumer;
/// returns those that are not.
pub(crate) async fn renew(
    conn: &mut Commands,
    config: &RedisStreamsConfig,
    keys: &QueueKeys,
    ids: &[String],
) -> RedisResult<Vec<String>> {
    let mut invocation = RENEW_SCRIPT.key(&keys.stream);
    invocation.arg(&config.group).arg(&config.consumer).arg(ids);
    invocation.invoke_async(conn).await
}

/// Deletes the group's consumers that hold nothing and have been idle for
/// `idle`; returns how many.
pub(crate) async fn prune(
    conn: &mut Commands,
    config: &RedisStreamsConfig,
    keys: &QueueKeys,
    idle: Duration,
) -> RedisResult<u64> {
    PRUNE_SCRIPT
        .key(&keys.stream)
        .arg(&config.group)
        .arg(millis(idle))
        .arg(&config.consumer)
        .invoke_async(conn)
        .await
}

/// `duration` in whole milliseconds (saturating).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn reclaim_replies_are_parsed() {
        let entry = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![bulk("task_name"), bulk("T")]),
            Value::Int(2),
        ]);
        let reply = Value::Array(vec![
            bulk("7-0"),
            Value::Array(vec![entry, Value::Nil]),
            Value::Int(1),
            Value::Int(0),
        ]);
        let reclaimed = parse_reclaimed(reply);
        assert_eq!(reclaimed.cursor, "7-0");
        assert_eq!(reclaimed.entries.len(), 1);
        assert_eq!(reclaimed.entries[0].0.id, "5-0");
        assert_eq!(reclaimed.entries[0].1, 2);
        assert_eq!((reclaimed.dead_lettered, reclaimed.deleted), (1, 0));
        assert_eq!(parse_reclaimed(Value::Nil).entries.len(), 0);
    }
}
