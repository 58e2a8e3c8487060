//! Connecting fails fast, with an error that names the broker, when
//! RabbitMQ cannot be reached.

use std::time::{Duration, Instant};

use dtask_amqp::{AmqpConfig, AmqpError, AmqpQueue};
use dtask_core::Error;

/// Connects to `url` and returns the error, which must come within `limit`.
async fn refused(config: AmqpConfig, limit: Duration) -> Error {
    let started = Instant::now();
    let error = AmqpQueue::connect(config).await.expect_err("connected to nothing");
    let took = started.elapsed();
    assert!(took < limit, "failing took {took:?}");
    error
}

#[tokio::test]
async fn an_unreachable_broker_fails_fast_naming_the_url() {
    let config = AmqpConfig::new("amqp://guest:guest@127.0.0.1:1/%2f");
    let error = refused(config, Duration::from_secs(3)).await;
    let text = error.to_string();
    assert!(matches!(error, Error::Backend { backend: "amqp", .. }), "{error:?}");
    assert!(
        text.contains("cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/%2f"),
        "{text}"
    );
    assert!(!text.contains("guest:guest"), "the password leaked: {text}");
    let source = std::error::Error::source(&error).and_then(|s| s.downcast_ref::<AmqpError>());
    assert!(matches!(source, Some(AmqpError::Connect { .. })), "{source:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_fails_after_the_connect_timeout() {
    // Accepts TCP connections (the kernel does) but never speaks AMQP.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("address").port();
    let config =
        AmqpConfig::new(format!("amqp://127.0.0.1:{port}/%2f")).with_connect_timeout(Duration::from_millis(300));
    let error = refused(config, Duration::from_secs(3)).await;
    let text = error.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("no answer after 300ms"),
        "{text}"
    );
}
