//! Streams a large synthetic object to S3 and back, checks every byte, and
//! prints the put and get throughput.
//!
//! ```sh
//! scripts/s3-server start
//! cargo build --release -p dtask-s3 --example copy
//! /usr/bin/time -v target/release/examples/copy 200   # "Maximum resident set size" = peak RSS
//! ```
//!
//! Arguments: `[SIZE_MIB] [PART_MIB] [CONCURRENT_PARTS]` (200, 8, 4). The
//! server comes from `DTASK_S3_ENDPOINT` (`http://127.0.0.1:9000`),
//! `DTASK_S3_ACCESS_KEY` and `DTASK_S3_SECRET_KEY` (`minioadmin`). The
//! body is generated on the fly (a fresh copy of the same 1 MiB block
//! for each chunk), so the process's memory is the store's own buffering.

use std::time::Instant;

use bytes::Bytes;
use dtask_core::infra::{ByteStream, ObjectStore};
use dtask_s3::{S3Config, S3ObjectStore};
use futures::{StreamExt, stream};

const MIB: usize = 1024 * 1024;
/// The pattern's period: a prime, so parts never line up with it.
const PERIOD: usize = 251;

fn arg(index: usize, default: usize) -> usize {
    std::env::args()
        .nth(index)
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("argument {index} must be a number, not {a}"))
        })
        .unwrap_or(default)
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `len` bytes of the pattern starting at offset 0.
fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % PERIOD) as u8).collect::<Vec<_>>().into()
}

/// `size` bytes of the pattern in 1 MiB chunks, each a fresh allocation as
/// a network body's would be (slices of one shared block would hide the
/// store's buffering from the RSS).
fn body(size: usize) -> ByteStream {
    let block = pattern(PERIOD * (MIB / PERIOD));
    let mut sent = 0;
    stream::iter(std::iter::from_fn(move || {
        let len = block.len().min(size - sent);
        sent += len;
        (len > 0).then(|| Ok(Bytes::copy_from_slice(&block[..len])))
    }))
    .boxed()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let size = arg(1, 200) * MIB;
    let config = S3Config::endpoint(
        env("DTASK_S3_ENDPOINT", "http://127.0.0.1:9000"),
        env("DTASK_S3_ACCESS_KEY", "minioadmin"),
        env("DTASK_S3_SECRET_KEY", "minioadmin"),
    )
    .with_part_size(arg(2, 8) * MIB)
    .with_max_concurrent_parts(arg(3, 4));
    let bound = config.part_size * (config.max_concurrent_parts + 1) / MIB;
    let bucket = dtask_core::conformance::unique_name("dtask-s3-copy");
    let store = S3ObjectStore::connect(config, &[&bucket]).await?;
    let mib = size as f64 / MIB as f64;
    println!("object: {mib} MiB; put buffering bound: {bound} MiB");

    let started = Instant::now();
    let meta = store.put(&bucket, "copy.bin", body(size)).await?;
    let put_secs = started.elapsed().as_secs_f64();
    assert_eq!(meta.size, size as u64);
    println!(
        "put: {put_secs:.2} s, {:.0} MiB/s ({:?})",
        mib / put_secs,
        store.put_stats()
    );

    let reference = pattern(2 * MIB + PERIOD);
    let started = Instant::now();
    let mut got = store.get(&bucket, "copy.bin", None).await?.body;
    let mut offset = 0;
    while let Some(chunk) = got.next().await {
        for piece in chunk?.chunks(2 * MIB) {
            let at = offset % PERIOD;
            assert!(
                piece == &reference[at..at + piece.len()],
                "byte mismatch near offset {offset}"
            );
            offset += piece.len();
        }
    }
    let get_secs = started.elapsed().as_secs_f64();
    assert_eq!(offset, size, "the object read back has the wrong size");
    println!("get: {get_secs:.2} s, {:.0} MiB/s (every byte checked)", mib / get_secs);

    store.delete(&bucket, "copy.bin").await?;
    Ok(())
}
