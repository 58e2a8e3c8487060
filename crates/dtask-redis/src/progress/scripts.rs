//! The Lua scripts of the progress tracker: each write is one round trip,
//! and changes the hash and publishes the snapshot atomically, so a
//! subscriber sees every change exactly once.
//!
//! The hash `{prefix}progress:{<task id>}` (the braces are part of the key,
//! its Redis Cluster hash tag) holds `snapshot` (the JSON of the
//! `TaskProgress`), `revision`, `cancel` (`1` once a cancellation was
//! asked, sticky), `created` (ms since 1970), `status` (its wire name),
//! `name` (the task's name) and `done` (`1` once terminal). Snapshots are
//! published on the channel of the same name. The sorted set
//! `{prefix}{progress}:index` lists every task by `created`; the sorted set
//! `{prefix}{progress}:expiring` lists the ended tasks by the time their
//! hash expires, so that listing can drop them from the index. (The two
//! share the hash tag `{progress}`: the listing script touches both.)

use std::sync::LazyLock;

use redis::Script;

/// Helpers every script starts with (and the state store's settlement
/// script, which writes progress as `UPDATE` does: `update`).
pub(crate) const PRELUDE: &str = r#"
local function mark_cancelled(snapshot)
  local marked = string.gsub(snapshot, '"cancelRequested":false', '"cancelRequested":true', 1)
  return marked
end
local function expire(hash, expiring, ms, id)
  redis.call('PEXPIRE', hash, ms)
  if not expiring then return end
  local now = redis.call('TIME')
  local at = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ms)
  redis.call('ZADD', expiring, string.format('%.0f', at), id)
end
-- Stores a newer snapshot and publishes it; see `UPDATE`.
local function update(hash, expiring, snapshot, revision, status, done, ms, id, cancel)
  local stored = redis.call('HMGET', hash, 'revision', 'done', 'cancel')
  if not stored[1] then return 0 end
  if stored[2] == '1' then return 1 end
  if done ~= '1' and tonumber(revision) <= tonumber(stored[1]) then return 1 end
  if stored[3] == '1' then
    cancel = '1'
    snapshot = mark_cancelled(snapshot)
  end
  redis.call('HSET', hash, 'snapshot', snapshot, 'revision', revision, 'status', status, 'done', done,
    'cancel', cancel)
  if done == '1' and ms ~= '0' then expire(hash, expiring, ms, id) end
  redis.call('PUBLISH', hash, snapshot)
  return 2
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// Creates the hash unless it exists, and indexes the task.
///
/// `KEYS`: hash, index, expiring; on a Redis Cluster only the hash (the
/// index and the expiry set live in another slot: the caller writes them
/// itself). `ARGV`: snapshot, revision, cancel flag,
/// created (ms), status, name, done flag, expiry ms (0: none), task id,
/// submitter (empty: none). Returns 1 when created, 0 when the task
/// exists.
pub(crate) static INIT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'snapshot', ARGV[1], 'revision', ARGV[2], 'cancel', ARGV[3],
  'created', ARGV[4], 'status', ARGV[5], 'name', ARGV[6], 'done', ARGV[7], 'submitter', ARGV[10])
if KEYS[2] then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[9]) end
if ARGV[7] == '1' and ARGV[8] ~= '0' then expire(KEYS[1], KEYS[3], ARGV[8], ARGV[9]) end
return 1
",
    )
});

/// Stores a newer snapshot and publishes it (with the sticky cancellation
/// flag set in its JSON when it was asked).
///
/// Newer means a larger revision, or terminal over a running snapshot; an
/// ended task's snapshot is final. The flag stays set once either the
/// stored or the new snapshot has it. `KEYS`: hash, expiring (only the
/// hash on a Redis Cluster). `ARGV`:
/// snapshot, revision, status, done flag, expiry ms (0: none), task id,
/// the snapshot's cancel flag. Returns 0 for an unknown task, 1 when
/// ignored, 2 when stored.
pub(crate) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    script("return update(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])")
});

/// Sets the cancellation flag of a running task and publishes its
/// snapshot; leaves an ended (or already cancelled) task as it is.
///
/// `KEYS`: hash. `ARGV`: the channel of every cancellation (the
/// tracker's `CancellationFeed`), published to as well. Returns
/// `{snapshot, cancel flag}` after the change, or nil for an unknown task.
pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local stored = redis.call('HMGET', KEYS[1], 'snapshot', 'done', 'cancel')
if not stored[1] then return false end
if stored[2] == '1' or stored[3] == '1' then return { stored[1], stored[3] or '0' } end
local snapshot = mark_cancelled(stored[1])
redis.call('HSET', KEYS[1], 'snapshot', snapshot, 'cancel', '1')
redis.call('PUBLISH', KEYS[1], snapshot)
redis.call('PUBLISH', ARGV[1], snapshot)
return { snapshot, '1' }
",
    )
});

/// Drops the tasks whose hash has expired from the index, then returns
/// `{tasks in the index, ids ranked ARGV[1]..=ARGV[2], newest first}`.
///
/// `KEYS`: index, expiring. At most 10 000 expired tasks are dropped per
/// call, so one call never blocks the server for long.
pub(crate) static RANGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for _ = 1, 20 do
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', ms), 'LIMIT', 0, 500)
  if #gone == 0 then break end
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('ZREM', KEYS[2], unpack(gone))
end
local ids = {}
if tonumber(ARGV[2]) >= tonumber(ARGV[1]) then
  ids = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2])
end
return { redis.call('ZCARD', KEYS[1]), ids }
",
    )
});

/// On a Redis Cluster, lists an ended task in the expiry set (which the
/// task's own scripts cannot reach there), due when its hash expires: the
/// server's time plus the expiry.
///
/// `KEYS`: expiring. `ARGV`: expiry ms, task id.
pub(crate) static LIST_EXPIRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = redis.call('TIME')
local at = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%.0f', at), ARGV[2])
return 1
",
    )
});
