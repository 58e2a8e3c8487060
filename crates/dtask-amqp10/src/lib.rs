#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! | module | what |
//! |---|---|
//! | `config` | [`Amqp10Config`], [`Broker`], [`Credentials`] |
//! | `queue` | [`Amqp10Queue`] and its trait implementations |
//! | `topology` | the node addresses of each broker |
//! | `message` | the layout of a message: properties, annotations, body |
//! | `publisher` | one accepted publish, retried across reconnections |
//! | `consumer` | the delivery stream and each delivery's acknowledger |
//! | `dead_letters` | [`Amqp10DeadLetters`]: listing and removing dead letters (RabbitMQ, generic) |
//! | `supervisor`, `connection` | the connection, its loss and its replacement |
//! | `servicebus`, `sas` | Service Bus: SAS tokens through `$cbs`, lock renewal through `$management` |
//! | `error` | [`Amqp10Error`] and [`ConfigError`] |

mod config;
mod connection;
mod consumer;
mod dead_letters;
mod error;
mod message;
mod publisher;
mod queue;
mod sas;
mod servicebus;
mod supervisor;
mod topology;

pub use config::{Amqp10Config, Broker, Credentials, DEFAULT_URL, URL_ENV};
pub use dead_letters::Amqp10DeadLetters;
pub use error::{Amqp10Error, ConfigError};
pub use message::{
    DEAD_LETTER_DELIVERIES_PROPERTY, DEAD_LETTER_REASON_PROPERTY, DELIVERIES_ANNOTATION, FORMAT_PROPERTY,
    MEMBER_PROPERTY, MESSAGE_ID_PROPERTY, SCHEMA_VERSION_PROPERTY, TASK_ID_PROPERTY, TASK_NAME_PROPERTY,
    TRACE_PARENT_PROPERTY,
};
pub use queue::Amqp10Queue;
pub use topology::dead_letter_queue;
