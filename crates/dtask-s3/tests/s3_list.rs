//! Listing beyond one page of `ListObjectsV2` (1000 keys).

mod support;

use bytes::Bytes;
use dtask_core::conformance::unique_name;
use dtask_core::infra::{ObjectStore, ObjectStoreExt};
use dtask_s3::S3ObjectStore;
use futures::{StreamExt, TryStreamExt, stream};
use support::S3Server;

#[tokio::test]
async fn listing_follows_continuation_tokens_and_keeps_key_order() {
    let server = S3Server::shared();
    let store = S3ObjectStore::new(server.config()).expect("the store");
    let bucket = unique_name("dtask-s3-list");
    let keys: Vec<String> = (0..1050).rev().map(|i| format!("page/{i:05}")).collect();

    stream::iter(&keys)
        .map(|key| store.put_bytes(&bucket, key, Bytes::from_static(b"x")))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("puts");
    store
        .put_bytes(&bucket, "pagex", Bytes::from_static(b"y"))
        .await
        .expect("put");

    let listed = store.list(&bucket, "page/").await.expect("list");
    let mut expected = keys.clone();
    expected.sort();
    let got: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(got, expected, "every key, in order, past the first page");
    assert_eq!(store.list(&bucket, "page").await.expect("list").len(), 1051);

    assert_eq!(store.delete_prefix(&bucket, "").await.expect("cleanup"), 1051);
}
