//! Checks for [`ObjectStore`] backends.
//!
//! Every check writes to a bucket of its own, named by
//! [`unique_name`], and deletes what it wrote.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, stream};
use time::OffsetDateTime;

use super::unique_name;
use crate::error::{Error, Result};
use crate::infra::{ByteStream, ObjectStore, ObjectStoreExt};

/// Runs every check of this module against `store`.
pub async fn run_all(store: &dyn ObjectStore) {
    put_get_round_trip(store).await;
    overwrite(store).await;
    head(store).await;
    range_get(store).await;
    missing_object(store).await;
    delete_is_idempotent(store).await;
    list_by_prefix(store).await;
    invalid_locations_are_rejected(store).await;
    failed_put_leaves_no_object(store).await;
    dropped_put_leaves_no_object(store).await;
}

fn bucket() -> String {
    unique_name("dtask-conformance")
}

/// `len` bytes of a pattern that does not repeat at chunk boundaries.
fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

/// `data` as a stream of `chunk`-byte pieces.
fn chunked(data: &Bytes, chunk: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = data.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(chunks).boxed()
}

async fn read_body(mut body: ByteStream) -> Bytes {
    let mut buffer = BytesMut::new();
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.expect("a get body yielded an error"));
    }
    buffer.freeze()
}

async fn cleanup(store: &dyn ObjectStore, bucket: &str) {
    store
        .delete_prefix(bucket, "")
        .await
        .expect("cleaning up the bucket failed");
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T>, what: &str) {
    assert!(
        matches!(result, Err(Error::Invalid { .. })),
        "{what}: expected Error::Invalid, got {result:?}"
    );
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T>, what: &str) {
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "{what}: expected Error::NotFound, got {result:?}"
    );
}

/// Objects read back exactly as written: empty, small, ~5 MiB streamed in
/// 64 KiB chunks, and under a non-ASCII key.
pub async fn put_get_round_trip(store: &dyn ObjectStore) {
    let bucket = bucket();
    let big = pattern(5 * 1024 * 1024 + 123);
    let cases = [
        ("empty", Bytes::new()),
        ("small.txt", Bytes::from_static(b"hello, object")),
        ("nested/dir/big.bin", big),
        ("dossier/été/名前 ✓.txt", Bytes::from("non-ASCII key")),
    ];
    for (key, data) in &cases {
        let meta = store
            .put(&bucket, key, chunked(data, 64 * 1024))
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        assert_eq!(meta.bucket, bucket, "put {key}: metadata bucket");
        assert_eq!(&meta.key, key, "put {key}: metadata key");
        assert_eq!(meta.size, data.len() as u64, "put {key}: metadata size");

        let got = store
            .get(&bucket, key, None)
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        assert_eq!(got.meta.size, data.len() as u64, "get {key}: size");
        assert_eq!(got.range, 0..data.len() as u64, "get {key}: range");
        let body = read_body(got.body).await;
        assert!(body == *data, "get {key}: the bytes differ from the ones written");
    }
    cleanup(store, &bucket).await;
}

/// A second put replaces the object.
pub async fn overwrite(store: &dyn ObjectStore) {
    let bucket = bucket();
    store
        .put_bytes(&bucket, "doc", Bytes::from("first version"))
        .await
        .expect("first put");
    store
        .put_bytes(&bucket, "doc", Bytes::from("v2"))
        .await
        .expect("second put");
    let data = store.get_bytes(&bucket, "doc").await.expect("get after overwrite");
    assert_eq!(data, "v2", "an overwrite must replace the object");
    let meta = store.head(&bucket, "doc").await.expect("head after overwrite");
    assert_eq!(meta.size, 2, "head must report the new size");
    cleanup(store, &bucket).await;
}

/// `head` reports what `put` stored, with a plausible modification time.
pub async fn head(store: &dyn ObjectStore) {
    let bucket = bucket();
    let before = OffsetDateTime::now_utc();
    let put = store
        .put_bytes(&bucket, "a/b.txt", Bytes::from("1234567"))
        .await
        .expect("put");
    let meta = store.head(&bucket, "a/b.txt").await.expect("head");
    assert_eq!((meta.bucket.as_str(), meta.key.as_str()), (bucket.as_str(), "a/b.txt"));
    assert_eq!(meta.size, 7, "head size");
    assert_eq!(meta.size, put.size, "head and put disagree on the size");
    // Remote servers have their own clocks: allow some skew.
    let skew = Duration::from_secs(300);
    let now = OffsetDateTime::now_utc();
    assert!(
        meta.last_modified >= before - skew && meta.last_modified <= now + skew,
        "last_modified {} is not around now ({now})",
        meta.last_modified
    );
    cleanup(store, &bucket).await;
}

/// Range reads: a middle slice, an end clamped to the size, a start past
/// the end rejected.
pub async fn range_get(store: &dyn ObjectStore) {
    let bucket = bucket();
    let data = pattern(100);
    store.put_bytes(&bucket, "ranged", data.clone()).await.expect("put");

    let cases = [(10..20, 10..20), (90..200, 90..100), (0..100, 0..100)];
    for (asked, expected) in cases {
        let got = store
            .get(&bucket, "ranged", Some(asked.clone()))
            .await
            .unwrap_or_else(|e| panic!("get range {asked:?}: {e}"));
        assert_eq!(got.range, expected, "get range {asked:?}: reported range");
        assert_eq!(got.meta.size, 100, "get range {asked:?}: size is the whole object's");
        let body = read_body(got.body).await;
        let want = data.slice(expected.start as usize..expected.end as usize);
        assert_eq!(body, want, "get range {asked:?}: bytes");
    }
    assert_invalid(
        store.get(&bucket, "ranged", Some(100..110)).await,
        "range starting at the end",
    );
    assert_invalid(store.get(&bucket, "ranged", Some(150..160)).await, "range past the end");
    cleanup(store, &bucket).await;
}

/// A missing object is [`Error::NotFound`] for `get` and `head`, in a
/// missing bucket and in an existing one.
pub async fn missing_object(store: &dyn ObjectStore) {
    let bucket = bucket();
    assert_not_found(store.get(&bucket, "nothing", None).await, "get in a missing bucket");
    assert_not_found(store.head(&bucket, "nothing").await, "head in a missing bucket");
    store
        .put_bytes(&bucket, "something", Bytes::from("x"))
        .await
        .expect("put");
    assert_not_found(store.get(&bucket, "nothing", None).await, "get of a missing key");
    assert_not_found(store.head(&bucket, "nothing").await, "head of a missing key");
    assert_not_found(store.head(&bucket, "some").await, "head of a key's prefix");
    cleanup(store, &bucket).await;
}

/// Deleting removes the object; deleting a missing one succeeds.
pub async fn delete_is_idempotent(store: &dyn ObjectStore) {
    let bucket = bucket();
    store
        .delete(&bucket, "never-written")
        .await
        .expect("delete of a missing object");
    store
        .put_bytes(&bucket, "dir/gone", Bytes::from("x"))
        .await
        .expect("put");
    store.delete(&bucket, "dir/gone").await.expect("delete");
    assert_not_found(store.head(&bucket, "dir/gone").await, "head after delete");
    assert_not_found(store.get(&bucket, "dir/gone", None).await, "get after delete");
    store.delete(&bucket, "dir/gone").await.expect("second delete");
    let listed = store.list(&bucket, "").await.expect("list after delete");
    assert!(listed.is_empty(), "a deleted object is still listed: {listed:?}");
}

/// Listing is in key order and filters by prefix; a missing bucket lists
/// as empty.
pub async fn list_by_prefix(store: &dyn ObjectStore) {
    let bucket = bucket();
    let keys = ["list/b/1", "list/ab", "other/x", "list/a/2", "list/a/1", "lista"];
    for key in keys {
        store.put_bytes(&bucket, key, Bytes::from(key)).await.expect("put");
    }
    let cases: [(&str, &[&str]); 6] = [
        ("", &["list/a/1", "list/a/2", "list/ab", "list/b/1", "lista", "other/x"]),
        ("list", &["list/a/1", "list/a/2", "list/ab", "list/b/1", "lista"]),
        ("list/a", &["list/a/1", "list/a/2", "list/ab"]),
        ("list/a/", &["list/a/1", "list/a/2"]),
        ("oth", &["other/x"]),
        ("missing/", &[]),
    ];
    for (prefix, expected) in cases {
        let listed = store.list(&bucket, prefix).await.expect("list");
        let got: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(got, expected, "list with prefix {prefix:?}");
        for meta in &listed {
            assert_eq!(meta.bucket, bucket, "listed bucket");
            assert_eq!(meta.size, meta.key.len() as u64, "listed size of {}", meta.key);
        }
    }
    let empty = store.list(&super::unique_name("dtask-missing"), "").await;
    let empty = empty.expect("list of a missing bucket");
    assert!(empty.is_empty(), "a missing bucket must list as empty");
    cleanup(store, &bucket).await;
}

/// Keys that could escape their bucket, and bad bucket names, are
/// [`Error::Invalid`] for every method.
pub async fn invalid_locations_are_rejected(store: &dyn ObjectStore) {
    let bucket = bucket();
    let keys = [
        "",
        "/abs",
        "a/../b",
        "a//b",
        "..",
        ".",
        "a/./b",
        "trailing/",
        "back\\slash",
    ];
    for key in keys {
        let put = store.put_bytes(&bucket, key, Bytes::from("x")).await;
        assert_invalid(put, &format!("put with key {key:?}"));
        assert_invalid(store.get(&bucket, key, None).await, &format!("get with key {key:?}"));
        assert_invalid(store.head(&bucket, key).await, &format!("head with key {key:?}"));
        assert_invalid(store.delete(&bucket, key).await, &format!("delete with key {key:?}"));
    }
    for bad in ["UPPER", "ab", "-leading", "with space", "..", ""] {
        let put = store.put_bytes(bad, "key", Bytes::from("x")).await;
        assert_invalid(put, &format!("put to bucket {bad:?}"));
        assert_invalid(store.list(bad, "").await, &format!("list of bucket {bad:?}"));
    }
    let listed = store.list(&bucket, "").await.expect("list");
    assert!(listed.is_empty(), "a rejected put stored something: {listed:?}");
}

/// A put whose body fails stores nothing, and leaves an object it would
/// have replaced as it was.
pub async fn failed_put_leaves_no_object(store: &dyn ObjectStore) {
    let bucket = bucket();
    let failing = || -> ByteStream {
        stream::iter([
            Ok(Bytes::from(vec![1u8; 70 * 1024])),
            Err(io::Error::other("the client went away")),
        ])
        .boxed()
    };
    let result = store.put(&bucket, "broken", failing()).await;
    assert!(result.is_err(), "a put whose body fails must fail: {result:?}");
    assert_not_found(store.head(&bucket, "broken").await, "head after a failed put");

    store
        .put_bytes(&bucket, "kept", Bytes::from("original"))
        .await
        .expect("put");
    let result = store.put(&bucket, "kept", failing()).await;
    assert!(result.is_err(), "a failed overwrite must fail: {result:?}");
    let data = store
        .get_bytes(&bucket, "kept")
        .await
        .expect("get after failed overwrite");
    assert_eq!(data, "original", "a failed overwrite must keep the previous object");
    let listed = store.list(&bucket, "").await.expect("list");
    let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["kept"], "a failed put left something listed");
    cleanup(store, &bucket).await;
}

/// A put dropped before its body ends stores nothing.
pub async fn dropped_put_leaves_no_object(store: &dyn ObjectStore) {
    let bucket = bucket();
    let stalled = stream::iter([Ok(Bytes::from(vec![2u8; 70 * 1024]))])
        .chain(stream::pending())
        .boxed();
    let put = store.put(&bucket, "dropped", stalled);
    let outcome = tokio::time::timeout(Duration::from_millis(200), put).await;
    assert!(outcome.is_err(), "a put whose body never ends cannot complete");
    assert_not_found(store.head(&bucket, "dropped").await, "head after a dropped put");
    let listed = store.list(&bucket, "").await.expect("list");
    assert!(listed.is_empty(), "a dropped put left something listed: {listed:?}");
}
