//! Large objects: the multipart path, its boundaries, and its aborts.

mod support;

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dtask_core::conformance::unique_name;
use dtask_core::infra::{ByteStream, ObjectStore, ObjectStoreExt};
use dtask_s3::{MIN_PART_SIZE, PutStats, S3ObjectStore};
use futures::{StreamExt, stream};
use support::S3Server;

const MIB: usize = 1024 * 1024;

/// `len` bytes of a pattern that does not repeat at part boundaries.
fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

fn chunked(data: &Bytes, chunk: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = (0..data.len())
        .step_by(chunk)
        .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
        .collect();
    stream::iter(chunks).boxed()
}

fn store_with_5_mib_parts(server: &S3Server) -> S3ObjectStore {
    S3ObjectStore::new(server.config().with_part_size(MIN_PART_SIZE)).expect("the store")
}

#[tokio::test]
async fn a_streamed_40_mib_put_goes_through_multipart_and_round_trips() {
    let server = S3Server::shared();
    let store = store_with_5_mib_parts(&server);
    let bucket = unique_name("dtask-s3-multipart");
    let data = pattern(40 * MIB + 7);

    let meta = store
        .put(&bucket, "big.bin", chunked(&data, 64 * 1024))
        .await
        .expect("put");

    assert_eq!(meta.size, data.len() as u64);
    let expected = PutStats {
        multipart_uploads: 1,
        multipart_completed: 1,
        parts_uploaded: 9, // 8 parts of 5 MiB and one of 7 bytes
        ..PutStats::default()
    };
    assert_eq!(store.put_stats(), expected);
    assert_eq!(
        store.head(&bucket, "big.bin").await.expect("head").size,
        data.len() as u64
    );
    let read = store.get_bytes(&bucket, "big.bin").await.expect("get");
    assert!(read == data, "the object read back differs from the one written");

    // A range across the boundary of parts 1 and 2.
    let across = (5 * MIB as u64 - 10)..(5 * MIB as u64 + 10);
    let got = store
        .get(&bucket, "big.bin", Some(across.clone()))
        .await
        .expect("ranged get");
    assert_eq!(got.range, across);
    let body: Vec<Bytes> = got.body.map(|chunk| chunk.expect("a chunk")).collect().await;
    assert_eq!(body.concat(), data[across.start as usize..across.end as usize]);

    store.delete(&bucket, "big.bin").await.expect("delete");
}

#[tokio::test]
async fn a_body_of_exactly_one_part_is_one_put_and_one_byte_more_is_multipart() {
    let server = S3Server::shared();
    let store = store_with_5_mib_parts(&server);
    let bucket = unique_name("dtask-s3-boundary");

    let one_part = pattern(MIN_PART_SIZE);
    store
        .put(&bucket, "one", chunked(&one_part, MIB))
        .await
        .expect("put of one part");
    assert_eq!(store.put_stats().single_puts, 1);
    assert_eq!(store.put_stats().multipart_uploads, 0);

    let one_more = pattern(MIN_PART_SIZE + 1);
    store
        .put(&bucket, "more", chunked(&one_more, MIB))
        .await
        .expect("put of one part and a byte");
    let stats = store.put_stats();
    assert_eq!((stats.multipart_uploads, stats.parts_uploaded), (1, 2), "{stats:?}");

    assert!(store.get_bytes(&bucket, "one").await.expect("get") == one_part);
    assert!(store.get_bytes(&bucket, "more").await.expect("get") == one_more);
    store.delete_prefix(&bucket, "").await.expect("cleanup");
}

/// A body that fails after two full parts: the put fails, and the upload is
/// aborted before it returns (s3s-fs cannot list multipart uploads, so the
/// check is that its data directory keeps no upload or part file).
#[tokio::test]
async fn a_body_failing_after_some_parts_aborts_the_multipart_upload() {
    let server = S3Server::private();
    let store = store_with_5_mib_parts(&server);
    let bucket = unique_name("dtask-s3-abort");
    store.ensure_buckets(&[&bucket]).await.expect("the bucket");
    let failing = chunked(&pattern(12 * MIB), MIB)
        .chain(stream::iter([Err(io::Error::other("the client went away"))]))
        .boxed();

    let result = store.put(&bucket, "broken", failing).await;

    assert!(result.is_err(), "a failing body must fail the put: {result:?}");
    let stats = store.put_stats();
    assert_eq!((stats.multipart_uploads, stats.multipart_aborted), (1, 1), "{stats:?}");
    assert_eq!(stats.multipart_completed, 0, "{stats:?}");
    assert!(store.head(&bucket, "broken").await.unwrap_err().is_not_found());
    assert_eq!(
        server.pending_upload_files(),
        Vec::<String>::new(),
        "multipart upload left behind"
    );
}

/// A put dropped while its body stalls after two parts: the upload is
/// aborted in the background.
#[tokio::test]
async fn a_dropped_multipart_put_is_aborted() {
    let server = S3Server::private();
    let store = store_with_5_mib_parts(&server);
    let bucket = unique_name("dtask-s3-dropped");
    store.ensure_buckets(&[&bucket]).await.expect("the bucket");
    let (stalled_tx, stalled_rx) = tokio::sync::oneshot::channel::<()>();
    let stalling = chunked(&pattern(11 * MIB), MIB)
        .chain(
            stream::once(async move {
                let _ = stalled_tx.send(());
                std::future::pending::<io::Result<Bytes>>().await
            })
            .boxed(),
        )
        .boxed();

    let mut put = Box::pin(store.put(&bucket, "dropped", stalling));
    tokio::select! {
        outcome = &mut put => panic!("a put whose body never ends cannot complete: {outcome:?}"),
        _ = stalled_rx => {}
    }
    assert!(
        !server.pending_upload_files().is_empty(),
        "the multipart upload should be open"
    );
    drop(put);

    // The abort runs in a spawned task; s3s-fs gives no event: poll its files.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.pending_upload_files().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the dropped upload was not aborted: {:?}",
            server.pending_upload_files()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.put_stats().multipart_aborted, 1);
    assert!(store.head(&bucket, "dropped").await.unwrap_err().is_not_found());
    assert!(store.list(&bucket, "").await.expect("list").is_empty());
}

/// A slow reader streams a body for longer than the I/O timeout: only the
/// waits for a chunk are bounded, not the whole body.
#[tokio::test]
async fn a_slow_reader_may_stream_for_longer_than_the_io_timeout() {
    let server = S3Server::shared();
    let config = server
        .config()
        .with_io_timeout(Duration::from_secs(2))
        .with_retries(0, Duration::from_secs(2));
    let store = S3ObjectStore::new(config).expect("the store");
    let bucket = unique_name("dtask-s3-slow");
    let data = pattern(12 * MIB);
    store.put_bytes(&bucket, "slow.bin", data.clone()).await.expect("put");

    let started = Instant::now();
    let mut body = store.get(&bucket, "slow.bin", None).await.expect("get").body;
    let (mut read, mut next_pause) = (Vec::with_capacity(data.len()), MIB);
    while let Some(chunk) = body.next().await {
        read.extend_from_slice(&chunk.expect("a chunk of a slowly read body"));
        if read.len() >= next_pause {
            // The reader's own pace is the property under test.
            tokio::time::sleep(Duration::from_millis(400)).await;
            next_pause += MIB;
        }
    }
    assert!(started.elapsed() > Duration::from_secs(4), "the reader was not slow");
    assert!(read == data, "the slowly read body differs");
    store.delete(&bucket, "slow.bin").await.expect("delete");
}
