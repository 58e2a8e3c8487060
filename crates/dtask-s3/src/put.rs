//! The streaming `put`.
//!
//! The body is read into a buffer of chunks (never copied: a part is a list
//! of [`Bytes`] slices) until it ends or holds more than one part. A body
//! that ended is sent as one `PUT`. Otherwise a multipart upload starts:
//! every full part is handed to a spawned task (at most
//! `max_concurrent_parts` at a time, reading the body on while they
//! upload), the rest goes as the last part, and the upload is completed.
//! A failing body, part or completion aborts the upload before the error
//! is returned; a put dropped half-way aborts it from its [`Drop`]. Either
//! way the parts already in flight are let finish first (each is bounded
//! by the request timeout), because S3 may keep a part that lands after
//! the abort.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use dtask_core::infra::{ByteStream, ObjectMeta, validate_location};
use dtask_core::{Error, Result};
use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt as _, PutPayload};
use time::OffsetDateTime;
use tokio::task::{JoinError, JoinSet};

use crate::error::{BACKEND, map_object_error};
use crate::stats::{PutEvent, PutStatsCounters};
use crate::store::{S3ObjectStore, object_path};

/// Writes `body` to `bucket/key` (see the module docs).
pub(crate) async fn put(store: &S3ObjectStore, bucket: &str, key: &str, mut body: ByteStream) -> Result<ObjectMeta> {
    validate_location(bucket, key)?;
    let path = object_path(key)?;
    let client = store.client(bucket)?;
    let part_size = store.config().part_size;

    let mut buffer = PartBuffer::default();
    let mut size = 0_u64;
    let ended = loop {
        if buffer.len() > part_size {
            break false;
        }
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| Error::backend(BACKEND, e))?;
                size += chunk.len() as u64;
                buffer.push(chunk);
            }
            None => break true,
        }
    };
    if ended {
        single_put(store, &client, bucket, &path, buffer.take_all()).await?;
    } else {
        size = multipart_put(store, &client, bucket, &path, buffer, body, size).await?;
    }
    Ok(ObjectMeta {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size,
        last_modified: OffsetDateTime::now_utc(),
    })
}

/// A missing bucket, as a put reports it.
fn map_put_error(error: object_store::Error, bucket: &str, path: &Path) -> Error {
    match error {
        object_store::Error::NotFound { .. } => Error::not_found(format!("bucket {bucket}")),
        other => map_object_error(other, bucket, path.as_ref()),
    }
}

async fn single_put(
    store: &S3ObjectStore,
    client: &AmazonS3,
    bucket: &str,
    path: &Path,
    payload: PutPayload,
) -> Result<()> {
    // S3 answers 404 to a put only when the bucket is missing.
    let result = match client.put(path, payload.clone()).await {
        Err(object_store::Error::NotFound { .. }) if store.create_missing_bucket(bucket).await? => {
            client.put(path, payload).await
        }
        other => other,
    };
    result.map_err(|e| map_put_error(e, bucket, path))?;
    store.stats.record(PutEvent::SinglePut);
    Ok(())
}

async fn multipart_put(
    store: &S3ObjectStore,
    client: &AmazonS3,
    bucket: &str,
    path: &Path,
    mut buffer: PartBuffer,
    mut body: ByteStream,
    mut size: u64,
) -> Result<u64> {
    let upload = match client.put_multipart(path).await {
        Err(object_store::Error::NotFound { .. }) if store.create_missing_bucket(bucket).await? => {
            client.put_multipart(path).await
        }
        other => other,
    }
    .map_err(|e| map_put_error(e, bucket, path))?;
    store.stats.record(PutEvent::MultipartStarted);
    tracing::debug!(bucket, key = %path, "multipart upload started");
    let config = store.config();
    let mut upload = Upload {
        inner: Some(upload),
        in_flight: JoinSet::new(),
        max_in_flight: config.max_concurrent_parts,
        stats: Arc::clone(&store.stats),
        location: format!("{bucket}/{path}"),
    };

    let outcome = async {
        loop {
            while buffer.len() >= config.part_size {
                upload.send(buffer.split(config.part_size)).await?;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    size += chunk.len() as u64;
                    buffer.push(chunk);
                }
                Some(Err(e)) => return Err(Error::backend(BACKEND, e)),
                None => break,
            }
        }
        if buffer.len() > 0 {
            upload.send(buffer.take_all()).await?;
        }
        upload.complete().await
    }
    .await;
    if let Err(error) = outcome {
        upload.abort().await;
        return Err(error);
    }
    Ok(size)
}

/// A multipart upload in progress: its parts in flight, and the duty to
/// abort it unless it completes.
struct Upload {
    /// `None` once completed or aborted.
    inner: Option<Box<dyn MultipartUpload>>,
    in_flight: JoinSet<object_store::Result<()>>,
    max_in_flight: usize,
    stats: Arc<PutStatsCounters>,
    location: String,
}

impl Upload {
    /// Starts uploading `part`, first collecting the parts that have ended
    /// (so that a failed one stops the put early) and waiting for a free
    /// slot.
    async fn send(&mut self, part: PutPayload) -> Result<()> {
        while let Some(ended) = self.in_flight.try_join_next() {
            self.part_ended(ended)?;
        }
        while self.in_flight.len() >= self.max_in_flight {
            self.join_one().await?;
        }
        let Some(inner) = self.inner.as_mut() else {
            return Err(Error::Closed {
                what: "multipart upload",
            });
        };
        self.in_flight.spawn(inner.put_part(part));
        Ok(())
    }

    /// Waits for one part in flight (if any) and reports its outcome.
    async fn join_one(&mut self) -> Result<()> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(ended) => self.part_ended(ended),
        }
    }

    fn part_ended(&self, ended: std::result::Result<object_store::Result<()>, JoinError>) -> Result<()> {
        match ended {
            Ok(Ok(())) => {
                self.stats.record(PutEvent::PartUploaded);
                Ok(())
            }
            Ok(Err(e)) => Err(Error::backend(BACKEND, e)),
            Err(e) => Err(Error::backend(BACKEND, e)),
        }
    }

    /// Waits for every part, then completes the upload.
    async fn complete(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        let Some(inner) = self.inner.as_mut() else {
            return Err(Error::Closed {
                what: "multipart upload",
            });
        };
        inner.complete().await.map_err(|e| Error::backend(BACKEND, e))?;
        self.inner = None;
        self.stats.record(PutEvent::MultipartCompleted);
        Ok(())
    }

    /// Lets the parts in flight end, then aborts the upload (a no-op once
    /// completed). Waiting first matters: S3 may keep a part that finishes
    /// after the abort. An abort that fails is logged: the error being
    /// returned is the one that made us abort.
    async fn abort(&mut self) {
        while self.in_flight.join_next().await.is_some() {}
        if let Some(mut inner) = self.inner.take() {
            self.stats.record(PutEvent::MultipartAborted);
            if let Err(error) = inner.abort().await {
                tracing::warn!(location = %self.location, %error, "aborting a multipart upload failed");
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        let mut in_flight = std::mem::take(&mut self.in_flight);
        let location = std::mem::take(&mut self.location);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                self.stats.record(PutEvent::MultipartAborted);
                runtime.spawn(async move {
                    while in_flight.join_next().await.is_some() {}
                    if let Err(error) = inner.abort().await {
                        tracing::warn!(%location, %error, "aborting a dropped multipart upload failed");
                    }
                });
            }
            Err(_) => tracing::warn!(
                %location,
                "a multipart upload was dropped outside a Tokio runtime and could not be aborted"
            ),
        }
    }
}

/// Body chunks waiting to be sent, cut into parts without copying.
#[derive(Debug, Default)]
struct PartBuffer {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl PartBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// The first `n` bytes (or all there are), as one payload.
    fn split(&mut self, n: usize) -> PutPayload {
        let mut part = Vec::new();
        let mut missing = n;
        while missing > 0 {
            let Some(mut chunk) = self.chunks.pop_front() else {
                break;
            };
            if chunk.len() > missing {
                part.push(chunk.split_to(missing));
                self.chunks.push_front(chunk);
                missing = 0;
            } else {
                missing -= chunk.len();
                part.push(chunk);
            }
        }
        self.len -= n - missing;
        part.into_iter().collect()
    }

    fn take_all(&mut self) -> PutPayload {
        self.len = 0;
        self.chunks.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer_of(chunks: &[&'static [u8]]) -> PartBuffer {
        let mut buffer = PartBuffer::default();
        for chunk in chunks {
            buffer.push(Bytes::from_static(chunk));
        }
        buffer
    }

    fn bytes(payload: PutPayload) -> Vec<u8> {
        Bytes::from(payload).to_vec()
    }

    #[test]
    fn parts_are_cut_at_exact_sizes_across_chunks() {
        let mut buffer = buffer_of(&[b"abc", b"", b"defg", b"h"]);
        assert_eq!(buffer.len(), 8);
        assert_eq!(bytes(buffer.split(5)), b"abcde");
        assert_eq!(buffer.len(), 3);
        assert_eq!(bytes(buffer.split(2)), b"fg");
        assert_eq!(bytes(buffer.take_all()), b"h");
        assert_eq!(buffer.len(), 0);
    }

    #[test]
    fn splitting_more_than_there_is_takes_everything() {
        let mut buffer = buffer_of(&[b"ab"]);
        assert_eq!(bytes(buffer.split(10)), b"ab");
        assert_eq!(buffer.len(), 0);
        assert!(bytes(buffer.split(3)).is_empty());
    }

    #[test]
    fn a_part_shares_the_chunk_it_was_cut_from() {
        let chunk = Bytes::from(vec![9u8; 100]);
        let mut buffer = PartBuffer::default();
        buffer.push(chunk.clone());
        let part = buffer.split(40);
        let first = part.iter().next().expect("one slice");
        assert_eq!(first.as_ptr(), chunk.as_ptr());
        assert_eq!(buffer.len(), 60);
    }
}
