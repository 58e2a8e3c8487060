#![doc = include_str!("../README.md")]

mod config;
mod conn;
mod idempotency;
mod lock;
mod progress;
mod settle;
mod state;
mod workers;

pub use config::{RedisBackends, RedisConfig};

/// The connection types the Redis backends share with the other Redis
/// backends of dtask (the Redis Streams queue).
pub mod connection {
    pub use crate::conn::{Commands, cluster_node};
}
pub use idempotency::RedisIdempotencyStore;
pub use lock::{RedisLock, RedisLockWithState};
pub use progress::RedisProgressTracker;
pub use settle::RedisSettlement;
pub use state::RedisStateStore;
pub use workers::RedisWorkerRegistry;
