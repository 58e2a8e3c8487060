//! The Lua scripts of the lock, run on each instance (one round trip each).

use std::sync::LazyLock;

use redis::Script;

/// The Lua function `acquire(lock, fence, owner, lease_ms, keep_ms)`:
/// takes the lock if free and draws the next fencing token from the
/// resource's fence counter (kept `keep_ms`). Returns the fencing token as
/// a decimal string, or false when the lock is held.
///
/// The token is `max(previous + 1, server time in µs)`: it increases on
/// every grant, and keeps increasing after the counter has expired or the
/// server has lost it (a restart without persistence), as long as the
/// server's clock does not go back by more than the gap between grants.
/// Numbers stay below 2^53 (µs since 1970 until the year 2255), where Lua's
/// doubles are exact; they are written with `%.0f` so no digit is lost.
pub(crate) const ACQUIRE_FUNCTION: &str = r"
local function acquire(lock, fence, owner, lease_ms, keep_ms)
  if not redis.call('SET', lock, owner, 'NX', 'PX', lease_ms) then
    return false
  end
  local now = redis.call('TIME')
  local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local last = tonumber(redis.call('GET', fence) or '0') or 0
  local token = string.format('%.0f', math.max(last + 1, floor))
  redis.call('SET', fence, token, 'PX', keep_ms)
  return token
end
";

/// Takes the lock if free and draws the next fencing token
/// ([`ACQUIRE_FUNCTION`]).
///
/// `KEYS[1]` the lock, `KEYS[2]` the resource's fence counter; `ARGV[1]`
/// the owner token, `ARGV[2]` the lease in ms, `ARGV[3]` how long the
/// counter is kept (ms). Returns the fencing token as a decimal string, or
/// nil when the lock is held.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{ACQUIRE_FUNCTION}return acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])"
    ))
});

/// Takes the lock as [`ACQUIRE`] does and, when taken, reads a saga
/// state's hash (the state store's fields `fence`, `format`, `bytes`).
///
/// `KEYS[1]` the lock, `KEYS[2]` the fence counter, `KEYS[3]` the state's
/// hash; `ARGV` as [`ACQUIRE`]'s. Returns nil when the lock is held, else
/// `{token, fence, format, bytes}` (the last three nil when no state is
/// saved).
pub(crate) static ACQUIRE_LOADING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{ACQUIRE_FUNCTION}
local token = acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if not token then return false end
local state = redis.call('HMGET', KEYS[3], 'fence', 'format', 'bytes')
return {{ token, state[1], state[2], state[3] }}
"
    ))
});

/// Raises the fence counter to the grant's token while the lease is still
/// ours, so every instance of the quorum has seen it.
///
/// `KEYS[1]` the lock, `KEYS[2]` the fence counter; `ARGV[1]` the owner
/// token, `ARGV[2]` the fencing token, `ARGV[3]` how long the counter is
/// kept (ms). Returns 1 when done, 0 when the lease is not ours.
pub(crate) static RAISE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local current = redis.call('GET', KEYS[2])
if not current or #ARGV[2] > #current or (#ARGV[2] == #current and ARGV[2] > current) then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return 1
",
    )
});

/// Makes the lease last `ARGV[2]` ms from now if it is still ours
/// (`ARGV[1]`). Returns 1 when extended, 0 otherwise.
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Deletes the lock if it is still ours (`ARGV[1]`). Returns 1 when
/// deleted, 0 otherwise.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});
