#![doc = include_str!("../README.md")]

mod config;
mod conn;
mod idempotency;
mod lock;
mod progress;
mod state;
mod workers;

pub use config::{RedisBackends, RedisConfig};
pub use idempotency::RedisIdempotencyStore;
pub use lock::RedisLock;
pub use progress::RedisProgressTracker;
pub use state::RedisStateStore;
pub use workers::RedisWorkerRegistry;
