//! The raw Redis Streams baseline, as `dtask-redis-streams`'
//! `examples/throughput.rs` measures it: `XADD` every message, then
//! `XREADGROUP` them by 100 (or 1000) and `XACK`+`XDEL` each (or each
//! batch), awaited one by one or pipelined.

use std::time::{Duration, Instant};

use redis::Value;

/// A raw run: how long it took and the round trips it made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRun {
    /// From the first `XADD` to the last ack.
    pub(crate) elapsed: Duration,
    /// Round trips to Redis.
    pub(crate) round_trips: u64,
}

/// Publishes `n` messages in pipelines of `batch` `XADD`s, reads `count`
/// entries per `XREADGROUP`, and acks them with one pipelined `XACK`+`XDEL`
/// per entry when `batch` is 1, per read otherwise. The stream is deleted
/// afterwards.
///
/// # Errors
/// A Redis error.
pub(crate) async fn run(
    client: &redis::Client,
    key_prefix: &str,
    n: usize,
    batch: usize,
    count: usize,
) -> redis::RedisResult<RawRun> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let key = format!("{key_prefix}raw-{}", uuid::Uuid::new_v4().simple());
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .exec_async(&mut conn)
        .await?;
    let payload = br#"{"n":12345,"name":"small message"}"#;
    let mut round_trips = 0;
    let started = Instant::now();
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let mut pipe = redis::pipe();
        for _ in chunk {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(100_000)
                .arg("*")
                .arg("payload")
                .arg(&payload[..])
                .ignore();
        }
        pipe.exec_async(&mut conn).await?;
        round_trips += 1;
    }
    let mut received = 0;
    while received < n {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        round_trips += 1;
        let ids = entry_ids(reply);
        received += ids.len();
        let acks: Vec<&[Vec<u8>]> = if batch == 1 {
            ids.chunks(1).collect()
        } else {
            vec![&ids[..]]
        };
        for ids in acks.into_iter().filter(|ids| !ids.is_empty()) {
            let mut pipe = redis::pipe();
            pipe.cmd("XACK").arg(&key).arg("g").arg(ids).ignore();
            pipe.cmd("XDEL").arg(&key).arg(ids).ignore();
            pipe.exec_async(&mut conn).await?;
            round_trips += 1;
        }
    }
    let elapsed = started.elapsed();
    redis::cmd("DEL").arg(&key).exec_async(&mut conn).await?;
    Ok(RawRun { elapsed, round_trips })
}

/// The entry ids of an `XREADGROUP` reply.
fn entry_ids(reply: Value) -> Vec<Vec<u8>> {
    let Value::Array(streams) = reply else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for stream in streams {
        let Value::Array(mut pair) = stream else { continue };
        let Some(Value::Array(entries)) = pair.pop() else {
            continue;
        };
        for entry in entries {
            if let Value::Array(parts) = entry
                && let Some(Value::BulkString(id)) = parts.into_iter().next()
            {
                ids.push(id);
            }
        }
    }
    ids
}
