//! What the queue refuses, and how it fails when Redis is not there.

mod support;

use std::time::{Duration, Instant};

use dtask_core::infra::{QueueConsumer, QueueMessage, QueuePublisher};
use dtask_core::{Error, Payload, TaskId};
use dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};

#[tokio::test]
async fn an_in_memory_payload_is_rejected() {
    let (config, _keys) = support::config();
    let queue = support::connect(config).await;
    let message = QueueMessage::new(TaskId::new(), "TestTask", Payload::in_memory(42u32));
    let error = queue.publish("jobs", message).await.unwrap_err();
    assert!(matches!(error, Error::Unsupported(_)), "{error:?}");
    assert!(error.to_string().contains("in-memory payload"), "{error}");
    assert_eq!(queue.len("jobs").await.unwrap(), 0, "nothing was published");
}

#[tokio::test]
async fn a_missing_server_fails_fast_naming_the_url() {
    // Nothing listens on port 1 of the loopback: the connection is refused.
    let started = Instant::now();
    let error = RedisStreamsQueue::connect(RedisStreamsConfig::new("redis://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, Error::Backend { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("Redis is not reachable at redis://127.0.0.1:1"),
        "{message}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_fails_after_the_connect_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = RedisStreamsConfig::new(format!("redis://:hunter2@127.0.0.1:{port}"))
        .with_connect_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let error = RedisStreamsQueue::connect(config).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("Redis is not reachable at redis://:***@127.0.0.1:{port}")),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "the password leaked: {message}");
    silent.abort();
}

#[tokio::test]
async fn a_malformed_url_is_invalid() {
    let error = RedisStreamsQueue::connect(RedisStreamsConfig::new("http://nope"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Invalid { .. }), "{error:?}");
}

#[tokio::test]
async fn ping_answers() {
    let (config, _keys) = support::config();
    let queue = support::connect(config).await;
    QueuePublisher::ping(&queue).await.unwrap();
    QueueConsumer::ping(&queue).await.unwrap();
}

#[tokio::test]
async fn consuming_a_key_that_is_not_a_stream_fails() {
    let (config, _keys) = support::config();
    let queue = support::connect(config).await;
    let key = queue.config().stream_key("jobs");
    redis::cmd("SET")
        .arg(&key)
        .arg("not a stream")
        .query_async::<()>(&mut support::raw().await)
        .await
        .unwrap();
    let error = queue.consume("jobs").await.err().expect("consume succeeded");
    assert!(matches!(error, Error::Backend { .. }), "{error:?}");
}
