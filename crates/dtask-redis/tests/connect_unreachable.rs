//! Connecting to a Redis that is not there fails fast, naming it.

mod support;

use std::time::{Duration, Instant};

use dtask_redis::{RedisBackends, RedisConfig};

#[tokio::test]
async fn a_refused_connection_fails_at_once_naming_the_url() {
    let started = Instant::now();
    let error = RedisBackends::connect(&["redis://127.0.0.1:1".to_owned()])
        .await
        .expect_err("connected to nothing");
    let message = error.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        message.contains("Redis at redis://127.0.0.1:1 is unreachable"),
        "{message}"
    );
}

#[tokio::test]
async fn a_silent_server_fails_within_the_connect_timeout() {
    // A listener that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let config = RedisConfig::new(url.clone()).with_connect_timeout(Duration::from_millis(500));
    let error = config.connect().await.expect_err("connected to a silent server");
    let elapsed = started.elapsed();
    let message = error.to_string();
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(message.contains(&format!("Redis at {url} is unreachable")), "{message}");
    hold.abort();
}

#[tokio::test]
async fn a_password_is_never_shown() {
    let error = RedisBackends::connect(&["redis://user:hunter2@127.0.0.1:1/0".to_owned()])
        .await
        .expect_err("connected to nothing");
    let message = error.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("redis://user:***@127.0.0.1:1/0"), "{message}");
}

#[tokio::test]
async fn no_url_is_invalid() {
    let error = RedisBackends::connect(&[]).await.expect_err("connected to nothing");
    assert!(matches!(error, dtask_core::Error::Invalid { .. }), "{error:?}");
}
