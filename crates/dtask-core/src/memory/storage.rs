//! [`MemoryObjectStore`]: buckets of objects held in memory.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::RwLock;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use time::OffsetDateTime;

use super::{read_lock, write_lock};
use crate::error::{Error, Result};
use crate::infra::{
    ByteStream, GetResult, ObjectMeta, ObjectStore, clamp_range, stream_bytes, validate_bucket, validate_location,
};

/// The backend name in [`Error::Backend`].
const BACKEND: &str = "memory";

/// One stored object: its bytes and what [`ObjectStore::head`] reports.
#[derive(Clone)]
struct Object {
    bytes: Bytes,
    meta: ObjectMeta,
}

/// An [`ObjectStore`] that keeps every object in memory.
///
/// Objects live in one ordered map keyed by `(bucket, key)`, so listing a
/// prefix is a range scan in key order. A `put` gathers its body into one
/// buffer and publishes it only once the stream has ended without error;
/// a `get` hands out slices of that buffer (at most 64 KiB each) without
/// copying. Buckets need no creation: a bucket exists while it holds an
/// object.
///
/// ```
/// use bytes::Bytes;
/// use dtask_core::infra::ObjectStoreExt;
/// use dtask_core::memory::MemoryObjectStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> dtask_core::Result<()> {
/// let store = MemoryObjectStore::new();
/// store.put_bytes("incoming", "a/b.txt", Bytes::from_static(b"hello")).await?;
/// assert_eq!(store.get_bytes("incoming", "a/b.txt").await?, "hello");
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct MemoryObjectStore {
    objects: RwLock<BTreeMap<(String, String), Object>>,
}

impl MemoryObjectStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many objects the store holds, across all buckets.
    pub fn len(&self) -> usize {
        read_lock(&self.objects).len()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        read_lock(&self.objects).is_empty()
    }

    fn lookup(&self, bucket: &str, key: &str) -> Result<Object> {
        validate_location(bucket, key)?;
        // The map is keyed by owned strings; a lookup allocates the pair.
        let location = (bucket.to_owned(), key.to_owned());
        read_lock(&self.objects)
            .get(&location)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("object {bucket}/{key}")))
    }
}

impl fmt::Debug for MemoryObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryObjectStore")
            .field("objects", &self.len())
            .finish()
    }
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    /// Gathers `body` into memory and stores it once the stream ends.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad location; [`Error::Backend`] (backend
    /// `memory`) when the body stream fails, in which case nothing is
    /// stored and an object already at the location is left as it was.
    ///
    /// # Cancel safety
    /// Dropping the future stores nothing.
    async fn put(&self, bucket: &str, key: &str, mut body: ByteStream) -> Result<ObjectMeta> {
        validate_location(bucket, key)?;
        // A body of one chunk is kept as it is; longer ones are gathered.
        let mut single: Option<Bytes> = None;
        let mut buffer = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::backend(BACKEND, e))?;
            match single.take() {
                None if buffer.is_empty() => single = Some(chunk),
                None => buffer.extend_from_slice(&chunk),
                Some(first) => {
                    buffer.reserve(first.len() + chunk.len());
                    buffer.extend_from_slice(&first);
                    buffer.extend_from_slice(&chunk);
                }
            }
        }
        let bytes = single.unwrap_or_else(|| buffer.freeze());
        let meta = ObjectMeta {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: bytes.len() as u64,
            last_modified: OffsetDateTime::now_utc(),
        };
        let object = Object {
            bytes,
            meta: meta.clone(),
        };
        write_lock(&self.objects).insert((bucket.to_owned(), key.to_owned()), object);
        Ok(meta)
    }

    async fn get(&self, bucket: &str, key: &str, range: Option<Range<u64>>) -> Result<GetResult> {
        let object = self.lookup(bucket, key)?;
        let range = clamp_range(range, object.meta.size)?;
        // The object is in memory, so its size (and the range) fit a usize.
        let slice = object.bytes.slice(range.start as usize..range.end as usize);
        Ok(GetResult {
            meta: object.meta,
            range,
            body: stream_bytes(slice),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        self.lookup(bucket, key).map(|object| object.meta)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        validate_location(bucket, key)?;
        write_lock(&self.objects).remove(&(bucket.to_owned(), key.to_owned()));
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_bucket(bucket)?;
        let start = (bucket.to_owned(), prefix.to_owned());
        let objects = read_lock(&self.objects);
        Ok(objects
            .range(start..)
            .take_while(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|(_, object)| object.meta.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;
    use crate::infra::ObjectStoreExt;

    #[tokio::test]
    async fn get_hands_out_slices_of_at_most_64_kib() {
        let store = MemoryObjectStore::new();
        let data = Bytes::from(vec![7u8; 200 * 1024]);
        store.put_bytes("bucket", "big", data.clone()).await.unwrap();

        let chunks: Vec<Bytes> = store
            .get("bucket", "big", None)
            .await
            .unwrap()
            .body
            .map(|chunk| chunk.unwrap())
            .collect()
            .await;

        assert!(chunks.iter().all(|c| c.len() <= 64 * 1024));
        assert_eq!(chunks.concat(), data);
    }

    #[tokio::test]
    async fn a_single_chunk_body_is_stored_without_copying() {
        let store = MemoryObjectStore::new();
        let data = Bytes::from(vec![1u8; 1024]);
        let body = stream::iter([Ok(data.clone())]).boxed();
        store.put("bucket", "one", body).await.unwrap();

        let mut body = store.get("bucket", "one", None).await.unwrap().body;
        let stored = body.next().await.unwrap().unwrap();
        assert_eq!(stored.as_ptr(), data.as_ptr());
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn debug_shows_the_count_not_the_bytes() {
        let store = MemoryObjectStore::new();
        store
            .put_bytes("bucket", "k", Bytes::from_static(b"secret"))
            .await
            .unwrap();
        let debug = format!("{store:?}");
        assert_eq!(debug, "MemoryObjectStore { objects: 1 }");
        assert_eq!(store.len(), 1);
        assert!(!store.is_empty());
    }
}
