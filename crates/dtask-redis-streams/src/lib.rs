//! A dtask work queue on Redis Streams: consumer groups, reclaim of the
//! messages of crashed workers, dead-lettering. The README follows.
//!
#![doc = include_str!("../README.md")]

mod ack_batch;
mod acker;
mod config;
mod consumer;
mod dead;
mod entry;
mod error;
mod queue;
mod scripts;
mod stats;

pub use config::RedisStreamsConfig;
pub use queue::RedisStreamsQueue;
pub use stats::RedisStreamsStats;

/// The field names of a queue's stream entries, for tools that read the
/// streams (or the dead-letter streams) directly.
pub mod fields {
    pub use crate::entry::{
        DELIVERIES, FORMAT, MEMBER, MESSAGE_ID, PAYLOAD, REASON, SCHEMA_VERSION_FIELD, SOURCE_ID, TASK_ID, TASK_NAME,
        TRACE_PARENT,
    };
}
