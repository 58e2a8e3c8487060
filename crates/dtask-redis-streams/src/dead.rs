//! Reading a dead-letter stream: the messages moved aside after too many
//! deliveries, or because they could not be read.

use dtask_core::Result;
use dtask_core::infra::DeadLetter;
use dtask_redis::connection::Commands;
use redis::Value;

use crate::entry::{REASON, RawEntry, parse_entry};
use crate::error::backend;

/// A dead-letter stream entry as a [`DeadLetter`]: its id is the entry's
/// id in the dead-letter stream (the id it had in the queue's stream is in
/// its `source_id` field, for tools reading the stream directly).
fn from_entry(entry: &RawEntry) -> DeadLetter {
    DeadLetter {
        id: entry.id.clone(),
        message: entry.decode().ok(),
        deliveries: entry.prior_deliveries(),
        reason: String::from_utf8_lossy(entry.field(REASON).unwrap_or_default()).into_owned(),
    }
}

/// Up to `count` entries of the dead-letter stream `key`, oldest first.
pub(crate) async fn read(conn: &mut Commands, key: &str, count: usize) -> Result<Vec<DeadLetter>> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(count.max(1))
        .query_async(conn)
        .await
        .map_err(backend)?;
    let Value::Array(entries) = reply else {
        return Ok(Vec::new());
    };
    Ok(entries
        .into_iter()
        .filter_map(|entry| parse_entry(entry).ok())
        .map(|entry| from_entry(&entry))
        .collect())
}
