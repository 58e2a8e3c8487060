//! Connecting fails fast, with an error that names the broker, when
//! RabbitMQ cannot be reached; with several nodes, it goes on to the next
//! one.

use std::time::{Duration, Instant};

use dtask_amqp::{AmqpConfig, AmqpError, AmqpQueue, DEFAULT_URL};
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

#[tokio::test]
async fn the_first_node_that_answers_serves_and_every_node_is_named_when_none_does() {
    // A refused port, then a silent one, then the local broker.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent = format!("amqp://127.0.0.1:{}/%2f", silent.local_addr().expect("address").port());
    let nodes = ["amqp://guest:guest@127.0.0.1:1/%2f".to_owned(), silent.clone()];
    let config = AmqpConfig::cluster(nodes.iter().cloned().chain([support_url()]))
        .expect("three nodes")
        .with_connect_timeout(Duration::from_millis(300));
    let amqp = AmqpQueue::connect(config).await.expect("the third node answers");
    amqp.ping().await.expect("ping through the third node");

    let config = AmqpConfig::cluster(nodes)
        .expect("two nodes")
        .with_connect_timeout(Duration::from_millis(300));
    let error = refused(config, Duration::from_secs(3)).await;
    let text = error.to_string();
    assert!(
        text.contains(&format!("amqp://guest:***@127.0.0.1:1/%2f, {silent}")) && text.contains("no answer after 300ms"),
        "every node, then the last one's failure: {text}"
    );
}

/// The local broker: `DTASK_AMQP_URL` or RabbitMQ's default URL here.
fn support_url() -> String {
    std::env::var("DTASK_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

#[tokio::test]
async fn a_failover_url_that_does_not_parse_is_refused_before_any_connection() {
    let config = AmqpConfig::new(support_url()).with_failover_urls(["amqp://guest:hidden@127.0.0.1:notaport/%2f"]);
    let error = refused(config, Duration::from_secs(3)).await;
    assert!(matches!(error, Error::Invalid { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1:notaport"), "{text}");
    assert!(!text.contains("hidden"), "the password leaked: {text}");
}
