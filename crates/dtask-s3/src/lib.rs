#![doc = include_str!("../README.md")]

mod config;
mod control;
mod error;
mod put;
mod stats;
mod store;

pub use config::{
    DEFAULT_MAX_CONCURRENT_PARTS, DEFAULT_PART_SIZE, DEFAULT_REGION, MAX_PART_SIZE, MIN_PART_SIZE, S3Config,
};
pub use error::S3Error;
pub use stats::PutStats;
pub use store::S3ObjectStore;
