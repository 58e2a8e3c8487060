//! [`LocalFileSystemStore`]: an [`ObjectStore`] on a local directory.
//!
//! Object `key` of `bucket` is the file `<root>/<bucket>/<key>`, the key's
//! `/`-separated segments becoming directories. Keys are checked by
//! [`validate_location`] first, so none can leave its bucket. A `put`
//! writes to a temporary file under `<root>/.tmp` (a name no bucket can
//! have) and renames it into place once the whole body is written, so
//! readers see either the old object or the new one, never a part, and a
//! failed or dropped `put` leaves nothing behind.
//!
//! File data is synced to disk before the rename, so a stored object
//! survives a crash of the process or the machine. A crash in the middle of
//! a `put` may leave a file in `<root>/.tmp`, which is never listed and can
//! be deleted whenever no `put` is running.

use std::io::{self, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::infra::{ByteStream, GetResult, ObjectMeta, ObjectStore, clamp_range, validate_bucket, validate_location};

/// The backend name in [`Error::Backend`].
const BACKEND: &str = "filesystem";
/// The directory of temporary files, under the root.
const TMP_DIR: &str = ".tmp";
/// The size of the chunks a `get` yields.
const CHUNK: usize = 64 * 1024;
/// How many times a `put` retries when a concurrent `delete` removes the
/// directory it is renaming into.
const RENAME_ATTEMPTS: usize = 5;

/// An [`ObjectStore`] keeping objects as files under a root directory.
///
/// See the [module documentation](self) for the layout and guarantees.
/// Keys that are a file and a directory prefix at once (`a` and `a/b`) are
/// possible in a bucket store but not on a file system: writing the second
/// one fails with [`Error::Backend`].
#[derive(Debug, Clone)]
pub struct LocalFileSystemStore {
    root: PathBuf,
}

impl LocalFileSystemStore {
    /// A store rooted at `root`, created if missing.
    ///
    /// # Errors
    /// [`Error::Backend`] when the directory cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join(TMP_DIR)).map_err(|e| io_error(&root, e))?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn bucket_path(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    /// The file of a validated location.
    fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        let mut path = self.bucket_path(bucket);
        path.extend(key.split('/'));
        path
    }

    /// Creates a fresh temporary file, recreating the temporary directory if
    /// someone removed it.
    async fn create_temp(&self) -> Result<(TempPath, fs::File)> {
        let dir = self.root.join(TMP_DIR);
        let path = dir.join(format!("{}.part", Uuid::new_v4().simple()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        let file = match options.open(&path).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).await.map_err(|e| io_error(&dir, e))?;
                options.open(&path).await
            }
            opened => opened,
        };
        let file = file.map_err(|e| io_error(&path, e))?;
        let temp = TempPath { path, published: false };
        Ok((temp, file))
    }
}

/// A temporary file, removed when dropped unless it was published.
struct TempPath {
    path: PathBuf,
    published: bool,
}

impl TempPath {
    /// Keeps the file: it has been renamed into place.
    fn disarm(mut self) {
        self.published = true;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.published {
            // Best effort; an unlink is short enough to do inline.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A [`Error::Backend`] naming the path involved.
fn io_error(path: &Path, error: io::Error) -> Error {
    let message = format!("{}: {error}", path.display());
    Error::backend(BACKEND, io::Error::new(error.kind(), message))
}

/// Whether `error` means that nothing is at the path.
fn is_missing(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn not_found(bucket: &str, key: &str) -> Error {
    Error::not_found(format!("object {bucket}/{key}"))
}

fn modified(metadata: &std::fs::Metadata) -> OffsetDateTime {
    metadata
        .modified()
        .map_or_else(|_| OffsetDateTime::now_utc(), OffsetDateTime::from)
}

fn object_meta(bucket: &str, key: String, metadata: &std::fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        bucket: bucket.to_owned(),
        key,
        size: metadata.len(),
        last_modified: modified(metadata),
    }
}

/// Renames `from` to `to`, creating `to`'s directories, and retrying when a
/// concurrent delete prunes them in between.
async fn publish(from: &Path, to: &Path) -> Result<()> {
    let mut attempt = 1;
    loop {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).await.map_err(|e| io_error(parent, e))?;
        }
        match fs::rename(from, to).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < RENAME_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(io_error(to, e)),
        }
    }
}

/// Removes the empty directories from `dir` up to, not including, `stop`.
fn prune_empty_dirs(dir: Option<&Path>, stop: &Path) {
    let mut dir = dir;
    while let Some(current) = dir.filter(|d| *d != stop && d.starts_with(stop)) {
        if std::fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
}

/// Walks `bucket_dir` for the files whose key starts with `prefix`, in key
/// order. Entries that vanish during the walk are skipped.
fn walk(bucket_dir: &Path, bucket: &str, prefix: &str) -> io::Result<Vec<ObjectMeta>> {
    let mut objects = Vec::new();
    let mut pending = vec![(bucket_dir.to_path_buf(), String::new())];
    while let Some((dir, relative)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if is_missing(&e) => continue,
            entries => entries?,
        };
        for entry in entries {
            let entry = entry?;
            // A name that is not UTF-8 cannot be a key: not ours.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let key = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                let as_prefix = format!("{key}/");
                if as_prefix.starts_with(prefix) || prefix.starts_with(&as_prefix) {
                    pending.push((entry.path(), key));
                }
            } else if file_type.is_file() && key.starts_with(prefix) {
                match entry.metadata() {
                    Ok(metadata) => objects.push(object_meta(bucket, key, &metadata)),
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::backend(BACKEND, e))?
}

#[async_trait]
impl ObjectStore for LocalFileSystemStore {
    /// Writes `body` to a temporary file, then renames it into place.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad location; [`Error::Backend`] for a
    /// failing body stream or file system, in which case the previous
    /// object (if any) is left as it was.
    ///
    /// # Cancel safety
    /// Dropping the future removes the temporary file; nothing is
    /// published.
    async fn put(&self, bucket: &str, key: &str, mut body: ByteStream) -> Result<ObjectMeta> {
        validate_location(bucket, key)?;
        let target = self.object_path(bucket, key);
        let (temp, mut file) = self.create_temp().await?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::backend(BACKEND, e))?;
            file.write_all(&chunk).await.map_err(|e| io_error(&temp.path, e))?;
        }
        file.flush().await.map_err(|e| io_error(&temp.path, e))?;
        file.sync_data().await.map_err(|e| io_error(&temp.path, e))?;
        drop(file);
        publish(&temp.path, &target).await?;
        temp.disarm();
        let metadata = fs::metadata(&target).await.map_err(|e| io_error(&target, e))?;
        Ok(object_meta(bucket, key.to_owned(), &metadata))
    }

    /// Streams the file (or the range of it) in chunks of 64 KiB.
    async fn get(&self, bucket: &str, key: &str, range: Option<Range<u64>>) -> Result<GetResult> {
        validate_location(bucket, key)?;
        let path = self.object_path(bucket, key);
        let mut file = match fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if is_missing(&e) => return Err(not_found(bucket, key)),
            Err(e) => return Err(io_error(&path, e)),
        };
        let metadata = file.metadata().await.map_err(|e| io_error(&path, e))?;
        if !metadata.is_file() {
            return Err(not_found(bucket, key));
        }
        let meta = object_meta(bucket, key.to_owned(), &metadata);
        let range = clamp_range(range, meta.size)?;
        if range.start > 0 {
            file.seek(SeekFrom::Start(range.start))
                .await
                .map_err(|e| io_error(&path, e))?;
        }
        let reader = file.take(range.end - range.start);
        Ok(GetResult {
            meta,
            range,
            body: ReaderStream::with_capacity(reader, CHUNK).boxed(),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        validate_location(bucket, key)?;
        let path = self.object_path(bucket, key);
        match fs::metadata(&path).await {
            Ok(metadata) if metadata.is_file() => Ok(object_meta(bucket, key.to_owned(), &metadata)),
            Ok(_) => Err(not_found(bucket, key)),
            Err(e) if is_missing(&e) => Err(not_found(bucket, key)),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// Removes the file and the directories it leaves empty (not the
    /// bucket's own).
    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        validate_location(bucket, key)?;
        let path = self.object_path(bucket, key);
        let bucket_dir = self.bucket_path(bucket);
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => {
                prune_empty_dirs(path.parent(), &bucket_dir);
                Ok(())
            }
            // A directory at the path is a key prefix, not an object.
            Err(e) if is_missing(&e) || e.kind() == io::ErrorKind::IsADirectory => Ok(()),
            Err(e) => Err(io_error(&path, e)),
        })
        .await
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_bucket(bucket)?;
        let bucket_dir = self.bucket_path(bucket);
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        blocking(move || walk(&bucket_dir, &bucket, &prefix).map_err(|e| io_error(&bucket_dir, e))).await
    }

    async fn ping(&self) -> Result<()> {
        fs::metadata(&self.root)
            .await
            .map(drop)
            .map_err(|e| io_error(&self.root, e))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::stream;

    use super::*;
    use crate::infra::ObjectStoreExt;

    fn store() -> (tempfile::TempDir, LocalFileSystemStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystemStore::new(dir.path().join("root")).unwrap();
        (dir, store)
    }

    fn temp_files(store: &LocalFileSystemStore) -> usize {
        std::fs::read_dir(store.root().join(TMP_DIR)).unwrap().count()
    }

    #[tokio::test]
    async fn failed_and_dropped_puts_leave_no_temporary_file() {
        let (_dir, store) = store();
        let failing = stream::iter([
            Ok(Bytes::from_static(b"part")),
            Err(io::Error::other("client went away")),
        ])
        .boxed();
        assert!(store.put("bucket", "failed", failing).await.is_err());

        let stalled = stream::iter([Ok(Bytes::from_static(b"part"))])
            .chain(stream::pending())
            .boxed();
        let put = store.put("bucket", "dropped", stalled);
        let elapsed = tokio::time::timeout(std::time::Duration::from_millis(50), put).await;
        assert!(elapsed.is_err(), "the put cannot finish");

        assert_eq!(temp_files(&store), 0);
        assert!(store.list("bucket", "").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn delete_prunes_empty_directories_but_keeps_the_bucket() {
        let (_dir, store) = store();
        store
            .put_bytes("bucket", "a/b/c/one", Bytes::from_static(b"1"))
            .await
            .unwrap();
        store
            .put_bytes("bucket", "a/two", Bytes::from_static(b"2"))
            .await
            .unwrap();

        store.delete("bucket", "a/b/c/one").await.unwrap();
        let bucket = store.root().join("bucket");
        assert!(!bucket.join("a/b").exists(), "empty directories remain");
        assert!(bucket.join("a/two").is_file());

        store.delete("bucket", "a/two").await.unwrap();
        assert!(!bucket.join("a").exists());
        assert!(bucket.is_dir(), "the bucket directory was removed");
    }

    #[tokio::test]
    async fn a_directory_is_not_an_object() {
        let (_dir, store) = store();
        store
            .put_bytes("bucket", "dir/file", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert!(store.head("bucket", "dir").await.unwrap_err().is_not_found());
        assert!(store.get("bucket", "dir", None).await.unwrap_err().is_not_found());
        assert!(
            store
                .get("bucket", "dir/file/x", None)
                .await
                .unwrap_err()
                .is_not_found()
        );
        store.delete("bucket", "dir").await.unwrap();
        assert!(store.head("bucket", "dir/file").await.is_ok());

        let conflict = store.put_bytes("bucket", "dir", Bytes::from_static(b"y")).await;
        assert!(matches!(conflict, Err(Error::Backend { .. })), "{conflict:?}");
        assert_eq!(temp_files(&store), 0);
    }

    #[tokio::test]
    async fn the_temporary_directory_is_recreated_and_never_listed() {
        let (_dir, store) = store();
        std::fs::remove_dir(store.root().join(TMP_DIR)).unwrap();
        store.put_bytes("bucket", "k", Bytes::from_static(b"v")).await.unwrap();
        assert_eq!(store.get_bytes("bucket", "k").await.unwrap(), "v");
        // `.tmp` is not a valid bucket name, so it cannot be listed.
        assert!(store.list(".tmp", "").await.is_err());
        store.ping().await.unwrap();
    }
}
