//! Object storage: buckets of keyed byte objects, read and written as
//! streams.
//!
//! [`ObjectStore`] is the minimal contract a backend implements; the
//! conveniences (`put_bytes`, `get_bytes`, ...) live on [`ObjectStoreExt`],
//! implemented for every store. Keys are `/`-separated relative paths: they
//! may not be empty, start with `/`, or contain empty, `.` or `..`
//! segments, so that no key can escape its bucket on any backend
//! ([`validate_location`]).

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// A stream of byte chunks, the body of an object on its way in or out.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What a store knows of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The bucket holding the object.
    pub bucket: String,
    /// The object's key inside the bucket.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    #[serde(with = "time::serde::rfc3339")]
    pub last_modified: OffsetDateTime,
}

/// An object being read: its metadata and a stream of its bytes (or of the
/// requested range of them).
pub struct GetResult {
    /// The object's metadata (the size is the whole object's).
    pub meta: ObjectMeta,
    /// The byte range the body covers.
    pub range: Range<u64>,
    /// The bytes.
    pub body: ByteStream,
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A byte store of buckets and keys.
///
/// Implementations stream: a `put` consumes its body chunk by chunk and a
/// `get` yields chunks as they are read, so neither end needs the whole
/// object in memory (the in-memory store holds objects in memory by
/// definition, and nothing more).
///
/// # Errors
/// Every method fails with [`Error::Invalid`] for a bad bucket or key;
/// `get` and `head` fail with [`Error::NotFound`] for a missing object.
///
/// # Cancel safety
/// Dropping a `put` future before it completes leaves no object behind
/// (backends write to a temporary place and publish at the end).
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug + 'static {
    /// Writes `body` to `bucket/key`, replacing any object there, and
    /// returns the stored object's metadata.
    async fn put(&self, bucket: &str, key: &str, body: ByteStream) -> Result<ObjectMeta>;

    /// Reads `bucket/key`, or the byte `range` of it when given (a range
    /// past the end is clamped; a range starting past the end is
    /// [`Error::Invalid`]).
    async fn get(&self, bucket: &str, key: &str, range: Option<Range<u64>>) -> Result<GetResult>;

    /// Reads the metadata of `bucket/key`.
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta>;

    /// Deletes `bucket/key`. Deleting a missing object succeeds.
    async fn delete(&self, bucket: &str, key: &str) -> Result<()>;

    /// Lists the objects of `bucket` whose key starts with `prefix`, in
    /// key order. A missing bucket lists as empty.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Checks that the store answers (used by readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// Conveniences for every [`ObjectStore`].
#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
    /// Writes a whole buffer.
    async fn put_bytes(&self, bucket: &str, key: &str, bytes: Bytes) -> Result<ObjectMeta> {
        self.put(bucket, key, stream_bytes(bytes)).await
    }

    /// Reads a whole object into memory. Meant for small objects and tests.
    async fn get_bytes(&self, bucket: &str, key: &str) -> Result<Bytes> {
        let mut body = self.get(bucket, key, None).await?.body;
        let mut buffer = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::backend("stream", e))?;
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer.freeze())
    }

    /// Deletes every object of `bucket` under `prefix` and returns how many
    /// there were.
    async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<usize> {
        let objects = self.list(bucket, prefix).await?;
        for object in &objects {
            self.delete(bucket, &object.key).await?;
        }
        Ok(objects.len())
    }
}

impl<S: ObjectStore + ?Sized> ObjectStoreExt for S {}

/// A stream that yields `bytes` in chunks of at most 64 KiB, without
/// copying.
pub fn stream_bytes(bytes: Bytes) -> ByteStream {
    const CHUNK: usize = 64 * 1024;
    let mut rest = bytes;
    futures::stream::iter(std::iter::from_fn(move || {
        if rest.is_empty() {
            None
        } else {
            let at = rest.len().min(CHUNK);
            Some(Ok(rest.split_to(at)))
        }
    }))
    .boxed()
}

/// Checks a bucket name and a key against the rules every backend shares.
///
/// # Errors
/// [`Error::Invalid`] naming the offending part.
pub fn validate_location(bucket: &str, key: &str) -> Result<()> {
    validate_bucket(bucket)?;
    if key.is_empty() {
        return Err(Error::invalid("object key", "the key is empty"));
    }
    if key.starts_with('/') || key.contains('\\') || key.contains('\0') {
        return Err(Error::invalid(
            "object key",
            format!("`{key}` must be a relative `/`-separated path"),
        ));
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(Error::invalid(
            "object key",
            format!("`{key}` has an empty, `.` or `..` segment"),
        ));
    }
    Ok(())
}

/// Checks a bucket name: 3 to 63 characters of lower-case letters, digits,
/// `-` and `.`, as S3 requires.
///
/// # Errors
/// [`Error::Invalid`] saying why.
pub fn validate_bucket(bucket: &str) -> Result<()> {
    let valid_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !(3..=63).contains(&bucket.len()) || !valid_chars || bucket.starts_with(['-', '.']) {
        return Err(Error::invalid(
            "bucket name",
            format!("`{bucket}` must be 3-63 lower-case letters, digits, `-` or `.`"),
        ));
    }
    Ok(())
}

/// Clamps a requested range to an object of `size` bytes.
///
/// # Errors
/// [`Error::Invalid`] when the range starts past the end or is reversed.
pub fn clamp_range(range: Option<Range<u64>>, size: u64) -> Result<Range<u64>> {
    match range {
        None => Ok(0..size),
        Some(r) if r.start > r.end || (r.start >= size && !(r.start == 0 && size == 0)) => Err(Error::invalid(
            "byte range",
            format!("{}..{} is outside an object of {size} bytes", r.start, r.end),
        )),
        Some(r) => Ok(r.start..r.end.min(size)),
    }
}
