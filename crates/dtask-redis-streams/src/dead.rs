//! [`DeadLetter`]: a message moved aside after too many deliveries, or
//! because it could not be read.

use dtask_core::Result;
use dtask_core::infra::QueueMessage;
use redis::Value;
use redis::aio::ConnectionManager;

use crate::entry::{REASON, RawEntry, SOURCE_ID, parse_entry};
use crate::error::backend;

/// One entry of a queue's dead-letter stream (`{key_prefix}{queue}:dead`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The dead-letter entry's own id.
    pub entry_id: String,
    /// The id the entry had in the queue's stream.
    pub source_id: String,
    /// How many times the message was delivered.
    pub deliveries: u32,
    /// Why it was moved: nacked too often, left unsettled too often, or
    /// malformed (and how).
    pub reason: String,
    /// The message, or `None` when the entry could not be decoded.
    pub message: Option<QueueMessage>,
}

impl DeadLetter {
    fn from_entry(entry: &RawEntry) -> Self {
        let text = |name: &str| String::from_utf8_lossy(entry.field(name).unwrap_or_default()).into_owned();
        Self {
            entry_id: entry.id.clone(),
            source_id: text(SOURCE_ID),
            deliveries: entry.prior_deliveries(),
            reason: text(REASON),
            message: entry.decode().ok(),
        }
    }
}

/// Up to `count` entries of the dead-letter stream `key`, oldest first.
pub(crate) async fn read(conn: &mut ConnectionManager, key: &str, count: usize) -> Result<Vec<DeadLetter>> {
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
        .map(|entry| DeadLetter::from_entry(&entry))
        .collect())
}
