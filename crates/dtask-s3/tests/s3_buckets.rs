//! Buckets, start-up checks and failing fast.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dtask_core::Error;
use dtask_core::conformance::unique_name;
use dtask_core::infra::{ObjectStore, ObjectStoreExt};
use dtask_s3::{S3Config, S3ObjectStore};
use support::S3Server;

#[tokio::test]
async fn ensure_buckets_creates_them_and_is_idempotent() {
    let server = S3Server::private();
    let store = S3ObjectStore::new(server.config()).expect("the store");
    let (first, second) = (unique_name("dtask-s3-ensure"), unique_name("dtask-s3-ensure"));

    store
        .ensure_buckets(&[&first, &second])
        .await
        .expect("creating the buckets");
    store.ensure_buckets(&[&first, &second]).await.expect("a second time");

    // s3s-fs keeps a bucket as a directory: the bucket exists, not just an
    // object put into it.
    for bucket in [&first, &second] {
        assert!(
            server.data_dir().join(bucket).is_dir(),
            "bucket {bucket} was not created"
        );
        assert!(store.list(bucket, "").await.expect("list").is_empty());
    }
    store.put_bytes(&first, "k", Bytes::from("v")).await.expect("put");
    store.ensure_buckets(&[&first]).await.expect("a bucket with objects");
    assert_eq!(store.get_bytes(&first, "k").await.expect("get"), "v");
}

#[tokio::test]
async fn connect_creates_the_buckets_and_ping_checks_the_first() {
    let server = S3Server::shared();
    let bucket = unique_name("dtask-s3-connect");

    let store = S3ObjectStore::connect(server.config(), &[&bucket])
        .await
        .expect("connect");
    store.ping().await.expect("ping");
    assert!(store.list(&bucket, "").await.expect("list").is_empty());

    let again = S3ObjectStore::connect(server.config(), &[&bucket])
        .await
        .expect("connect again");
    again.ping().await.expect("ping again");
}

#[tokio::test]
async fn connect_without_creation_checks_the_bucket_exists() {
    let server = S3Server::shared();
    let config = server.config().with_create_buckets_on_start(false);

    let missing = unique_name("dtask-s3-missing");
    let result = S3ObjectStore::connect(config.clone(), &[&missing]).await;
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "a missing bucket: {result:?}"
    );

    let present = unique_name("dtask-s3-present");
    S3ObjectStore::new(server.config())
        .expect("the store")
        .ensure_buckets(&[&present])
        .await
        .expect("the bucket");
    S3ObjectStore::connect(config.clone(), &[&present])
        .await
        .expect("an existing bucket");
    S3ObjectStore::connect(config, &[])
        .await
        .expect("no bucket: a bucket listing");
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_fast_naming_it() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("a port")
        .local_addr()
        .expect("addr")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = S3Config::endpoint(&endpoint, "minioadmin", "minioadmin");

    for buckets in [&["dtask-unreachable"][..], &[]] {
        let started = Instant::now();
        let result = S3ObjectStore::connect(config.clone(), buckets).await;
        let elapsed = started.elapsed();
        let error = result.expect_err("nothing listens there");
        assert!(matches!(error, Error::Backend { backend: "s3", .. }), "{error:?}");
        let message = format!("{error}");
        assert!(
            message.contains(&endpoint),
            "the error should name {endpoint}: {message}"
        );
        assert!(elapsed < Duration::from_secs(2), "connect took {elapsed:?} to fail");
    }
}

#[tokio::test]
async fn wrong_credentials_are_refused_at_connect() {
    let server = S3Server::shared();
    let config = S3Config::endpoint(server.endpoint(), "minioadmin", "not-the-secret");

    let error = S3ObjectStore::connect(config, &["dtask-s3-creds"])
        .await
        .expect_err("a bad secret");

    let message = format!("{error}");
    assert!(message.contains("HTTP 403"), "{message}");
    assert!(message.contains(server.endpoint()), "{message}");
}

#[tokio::test]
async fn bad_names_and_settings_are_refused_before_any_request() {
    let config = S3Config::endpoint("http://127.0.0.1:1", "k", "s");
    let store = S3ObjectStore::new(config.clone()).expect("the store");
    let result = store.ensure_buckets(&["ok-bucket", "Not_Valid"]).await;
    assert!(matches!(result, Err(Error::Invalid { .. })), "{result:?}");

    let result = S3ObjectStore::new(config.clone().with_allow_http(false));
    assert!(matches!(result, Err(Error::Invalid { .. })), "{result:?}");
    let result = S3ObjectStore::new(config.with_part_size(1024));
    assert!(matches!(result, Err(Error::Invalid { .. })), "{result:?}");
}
