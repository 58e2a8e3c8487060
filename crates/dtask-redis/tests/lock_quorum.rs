//! RedLock over three logical instances (databases 1, 2 and 3 of the local
//! server, each with its own keys), with instances down from the start or
//! lost on the way (through a proxy that is stopped).

mod support;

use std::time::Duration;

use dtask_core::Error;
use dtask_core::infra::DistributedLock;
use dtask_redis::{RedisConfig, RedisLock};

use support::{TcpProxy, config, connect, delete_prefix, raw, require_redis, unique_prefix, url};

const LONG: Duration = Duration::from_secs(30);

async fn quorum_lock(prefix: &str, urls: [String; 3]) -> RedisLock {
    connect(&config(prefix).with_lock_urls(urls)).await.lock()
}

async fn cleanup(prefix: &str) {
    for db in 1..=3 {
        delete_prefix(db, prefix).await;
    }
}

/// The owner token stored for `resource` in database `db`, if any.
async fn holder(db: u8, prefix: &str, resource: &str) -> Option<String> {
    let mut conn = raw(db).await;
    redis::cmd("GET")
        .arg(format!("{prefix}lock:{{{resource}}}"))
        .query_async(&mut conn)
        .await
        .expect("GET")
}

/// Takes `resource` in database `db` directly, as another client would.
async fn squat(db: u8, prefix: &str, resource: &str) {
    let mut conn = raw(db).await;
    redis::cmd("SET")
        .arg(format!("{prefix}lock:{{{resource}}}"))
        .arg("someone-else")
        .arg("PX")
        .arg(30_000)
        .query_async::<()>(&mut conn)
        .await
        .expect("SET");
}

#[tokio::test]
async fn a_grant_holds_the_key_on_every_instance() {
    let prefix = unique_prefix();
    let lock = quorum_lock(&prefix, [url(1), url(2), url(3)]).await;
    let guard = lock.try_acquire("job", LONG).await.unwrap().expect("free");
    let owners = [
        holder(1, &prefix, "job").await,
        holder(2, &prefix, "job").await,
        holder(3, &prefix, "job").await,
    ];
    assert!(owners.iter().all(|o| o.is_some() && *o == owners[0]), "{owners:?}");
    assert!(lock.try_acquire("job", LONG).await.unwrap().is_none(), "granted twice");
    guard.release().await.unwrap();
    assert_eq!(holder(2, &prefix, "job").await, None, "not released");
    cleanup(&prefix).await;
}

#[tokio::test]
async fn a_minority_holding_the_key_does_not_block_the_majority() {
    let prefix = unique_prefix();
    let lock = quorum_lock(&prefix, [url(1), url(2), url(3)]).await;
    squat(1, &prefix, "job").await;
    let guard = lock.try_acquire("job", LONG).await.unwrap().expect("2 of 3 are free");
    assert_eq!(holder(1, &prefix, "job").await.as_deref(), Some("someone-else"));
    guard.release().await.unwrap();

    squat(2, &prefix, "job").await;
    let refused = lock.try_acquire("job", LONG).await.unwrap();
    assert!(refused.is_none(), "granted with 2 of 3 held elsewhere");
    assert_eq!(
        holder(3, &prefix, "job").await,
        None,
        "the partial grant was not undone"
    );
    cleanup(&prefix).await;
}

#[tokio::test]
async fn one_instance_down_still_grants_by_majority() {
    let prefix = unique_prefix();
    let lock = quorum_lock(&prefix, [url(1), url(2), "redis://127.0.0.1:1".to_owned()]).await;
    lock.ping().await.expect("a majority answers the ping");
    let guard = lock.try_acquire("job", LONG).await.unwrap().expect("2 of 3 grant");
    assert!(lock.try_acquire("job", LONG).await.unwrap().is_none(), "granted twice");
    guard.extend(LONG).await.expect("2 of 3 extend");
    guard.release().await.expect("2 of 3 release");
    let again = lock.try_acquire("job", LONG).await.unwrap().expect("free again");
    drop(again);
    cleanup(&prefix).await;
}

#[tokio::test]
async fn a_majority_down_at_start_fails_fast_naming_them() {
    require_redis().await;
    let config = RedisConfig::new(url(0)).with_lock_urls([
        url(1),
        "redis://127.0.0.1:1".to_owned(),
        "redis://127.0.0.1:2".to_owned(),
    ]);
    let started = std::time::Instant::now();
    let error = config.connect().await.expect_err("connected without a majority");
    let message = error.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(message.contains("only 1 of 3 lock instances"), "{message}");
    assert!(
        message.contains("Redis at redis://127.0.0.1:1 is unreachable"),
        "{message}"
    );
    assert!(
        message.contains("Redis at redis://127.0.0.1:2 is unreachable"),
        "{message}"
    );
}

#[tokio::test]
async fn a_majority_lost_after_start_fails_acquisition() {
    let prefix = unique_prefix();
    let (second, third) = (TcpProxy::start().await, TcpProxy::start().await);
    let config = config(&prefix)
        .with_lock_urls([url(1), second.url(2), third.url(3)])
        .with_lock_instance_timeout(Duration::from_millis(300));
    let lock = connect(&config).await.lock();
    let guard = lock.try_acquire("job", LONG).await.unwrap().expect("all up");
    guard.release().await.unwrap();

    second.stop();
    third.stop();
    let failed = lock.try_acquire("job", LONG).await;
    let Err(Error::Backend { source, .. }) = &failed else {
        panic!("expected a backend error, got {failed:?}");
    };
    let message = source.to_string();
    assert!(message.contains("2 of 3 Redis instances failed"), "{message}");
    assert!(
        message.contains(&second.url(2)) && message.contains(&third.url(3)),
        "{message}"
    );
    assert_eq!(
        holder(1, &prefix, "job").await,
        None,
        "the partial grant was not undone"
    );
    assert!(lock.ping().await.is_err(), "a ping without a majority must fail");
    cleanup(&prefix).await;
}

#[tokio::test]
async fn tokens_increase_across_quorums_with_diverging_counters() {
    let prefix = unique_prefix();
    let lock = quorum_lock(&prefix, [url(1), url(2), url(3)]).await;
    // Instance 1's counter runs far ahead of the clock-based tokens.
    let mut conn = raw(1).await;
    let ahead: u64 = 9_000_000_000_000_000;
    redis::cmd("SET")
        .arg(format!("{prefix}fence:{{job}}"))
        .arg(ahead)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    // Granted by {1, 2} (3 is held): the token comes from instance 1...
    squat(3, &prefix, "job").await;
    let first = lock.try_acquire("job", LONG).await.unwrap().expect("1 and 2 are free");
    assert!(first.fencing_token() > ahead);
    let first_token = first.fencing_token();
    first.release().await.unwrap();
    redis::cmd("DEL")
        .arg(format!("{prefix}lock:{{job}}"))
        .query_async::<()>(&mut raw(3).await)
        .await
        .unwrap();

    // ...then by {2, 3} (1 is held): instance 2 was raised to it.
    squat(1, &prefix, "job").await;
    let second = lock.try_acquire("job", LONG).await.unwrap().expect("2 and 3 are free");
    assert!(
        second.fencing_token() > first_token,
        "{} is not above {first_token}",
        second.fencing_token()
    );
    second.release().await.unwrap();
    cleanup(&prefix).await;
}

#[test]
fn dropping_a_guard_outside_a_runtime_does_not_panic() {
    let prefix = unique_prefix();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let guard = runtime.block_on(async {
        let lock = connect(&config(&prefix)).await.lock();
        lock.try_acquire("job", LONG).await.unwrap().expect("free")
    });
    drop(runtime);
    drop(guard);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(delete_prefix(0, &prefix));
}
