//! The object store conformance suite, unchanged, against S3 (s3s-fs).

mod support;

use dtask_core::conformance;
use dtask_s3::{MIN_PART_SIZE, S3ObjectStore};
use support::S3Server;

#[tokio::test]
async fn s3_object_store_passes_the_storage_suite() {
    let server = S3Server::shared();
    let store = S3ObjectStore::new(server.config()).expect("the store");
    conformance::storage::run_all(&store).await;
    let stats = store.put_stats();
    assert_eq!(
        stats.multipart_uploads, 0,
        "with 8 MiB parts every object of the suite is one PUT"
    );
}

/// With the smallest part size, the suite's 5 MiB object goes through a
/// multipart upload, and its failing and dropped puts through the
/// single-PUT path still.
#[tokio::test]
async fn s3_object_store_passes_the_storage_suite_with_5_mib_parts() {
    let server = S3Server::shared();
    let store = S3ObjectStore::new(server.config().with_part_size(MIN_PART_SIZE)).expect("the store");
    conformance::storage::run_all(&store).await;
    let stats = store.put_stats();
    assert_eq!(stats.multipart_uploads, 1, "the 5 MiB + 123 B object: {stats:?}");
    assert_eq!(stats.multipart_completed, 1, "{stats:?}");
    assert_eq!(stats.parts_uploaded, 2, "{stats:?}");
}
