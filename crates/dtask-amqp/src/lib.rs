#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! | module | what |
//! |---|---|
//! | `config` | [`AmqpConfig`] |
//! | `queue` | [`AmqpQueue`] and its trait implementations |
//! | `topology` | the queues and exchange behind a task queue, and their declaration |
//! | `message` | the wire layout of a message: properties, headers, body |
//! | `publisher` | one confirmed publish, retried across reconnections |
//! | `consumer` | the delivery stream and each delivery's acknowledger |
//! | `supervisor`, `session` | the connection, its loss and its replacement |
//! | `error` | [`AmqpError`], the source of this crate's backend errors |

mod config;
mod consumer;
mod dead_letters;
mod error;
mod message;
mod publisher;
mod queue;
mod session;
mod supervisor;
mod topology;

pub use config::{AmqpConfig, DEFAULT_URL};
pub use error::AmqpError;
pub use message::{
    DEAD_LETTER_DELIVERIES_HEADER, DEAD_LETTER_REASON_HEADER, DELIVERY_COUNT_HEADER, FORMAT_HEADER, MEMBER_HEADER,
    MESSAGE_ID_HEADER, PERSISTENT, SCHEMA_VERSION_HEADER, TASK_ID_HEADER, TASK_NAME_HEADER, TRACE_PARENT_HEADER,
};
pub use queue::AmqpQueue;
pub use topology::{DEAD_LETTER_EXCHANGE, dead_letter_queue};
