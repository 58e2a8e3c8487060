//! [`S3ObjectStore`]: the [`ObjectStore`] trait on S3, one `object_store`
//! client per bucket.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use dtask_core::infra::{
    ByteStream, GetResult, ObjectMeta, ObjectStore, clamp_range, validate_bucket, validate_location,
};
use dtask_core::{Error, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _};
use time::OffsetDateTime;

use crate::config::S3Config;
use crate::control::{BucketState, ControlClient};
use crate::error::{BACKEND, map_object_error};
use crate::stats::{PutStats, PutStatsCounters};

/// An [`ObjectStore`] on S3 or any S3-compatible server.
///
/// `object_store` binds one client to one bucket; this store keeps one per
/// bucket it has touched, created on first use and cached. Keys are checked
/// with [`validate_location`] before any request. Bodies stream both ways:
/// see [`S3Config`] for the memory a `put` holds, and the crate docs for
/// how a `put` chooses between one `PUT` and a multipart upload.
///
/// # Cancel safety
/// Dropping a `put` leaves no object: a multipart upload in progress is
/// aborted by a task spawned on the current Tokio runtime, and a single
/// `PUT` is cut off before the server has the whole body (unless it had
/// already received all of it).
pub struct S3ObjectStore {
    config: S3Config,
    clients: RwLock<HashMap<String, Arc<AmazonS3>>>,
    control: ControlClient,
    ping_bucket: Option<String>,
    pub(crate) stats: Arc<PutStatsCounters>,
}

impl S3ObjectStore {
    /// A store for the server `config` names, without contacting it.
    ///
    /// # Errors
    /// [`Error::Invalid`] when [`S3Config::validate`] refuses the settings.
    pub fn new(config: S3Config) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            control: ControlClient::new(&config)?,
            config,
            clients: RwLock::new(HashMap::new()),
            ping_bucket: None,
            stats: Arc::default(),
        })
    }

    /// A store that has checked the server answers: it creates `buckets`
    /// when [`S3Config::create_buckets_on_start`] is set (otherwise checks
    /// the first exists), or lists the buckets when none is given. Later
    /// [`ping`](ObjectStore::ping)s check the first of `buckets`.
    ///
    /// The check is one request per bucket without retries, bounded by
    /// [`S3Config::connect_timeout`]: a server that is not there fails the
    /// call at once.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad settings or bucket names;
    /// [`Error::Backend`] with an [`S3Error`](crate::S3Error) naming the
    /// endpoint when the server does not answer or refuses;
    /// [`Error::NotFound`] for a missing bucket that is not to be created.
    pub async fn connect(config: S3Config, buckets: &[&str]) -> Result<Self> {
        let mut store = Self::new(config)?;
        store.ping_bucket = buckets.first().map(|bucket| (*bucket).to_owned());
        if store.config.create_buckets_on_start && !buckets.is_empty() {
            store.ensure_buckets(buckets).await?;
        } else {
            store.ping().await?;
        }
        Ok(store)
    }

    /// Creates the buckets that do not exist yet. Buckets that exist (and
    /// that these credentials may use) are left as they are, so calling it
    /// again is harmless.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad bucket name (before any request);
    /// [`Error::Backend`] with an [`S3Error`](crate::S3Error) when the
    /// server does not answer, refuses, or another account owns a name.
    pub async fn ensure_buckets(&self, buckets: &[&str]) -> Result<()> {
        for bucket in buckets {
            validate_bucket(bucket)?;
        }
        for bucket in buckets {
            self.control.ensure_bucket(bucket).await?;
        }
        Ok(())
    }

    /// The settings this store was built with.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// How many puts went which way so far (single `PUT`s, multipart
    /// uploads, parts, aborts).
    pub fn put_stats(&self) -> PutStats {
        self.stats.snapshot()
    }

    /// The `object_store` client bound to `bucket`, for what this trait
    /// does not cover (presigned URLs, copies, conditional writes...).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad bucket name.
    pub fn client(&self, bucket: &str) -> Result<Arc<AmazonS3>> {
        validate_bucket(bucket)?;
        if let Some(client) = self.clients.read().unwrap_or_else(PoisonError::into_inner).get(bucket) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(self.config.amazon_s3(bucket)?);
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        Ok(Arc::clone(clients.entry(bucket.to_owned()).or_insert(client)))
    }

    /// Creates `bucket` when it is missing and the settings allow it.
    /// Returns whether the caller should try again.
    pub(crate) async fn create_missing_bucket(&self, bucket: &str) -> Result<bool> {
        if !self.config.create_missing_buckets || self.control.head_bucket(bucket).await? == BucketState::Exists {
            return Ok(false);
        }
        self.control.ensure_bucket(bucket).await?;
        Ok(true)
    }

    async fn ranged_get(
        &self,
        client: &AmazonS3,
        bucket: &str,
        key: &str,
        path: &Path,
        range: Range<u64>,
    ) -> Result<object_store::GetResult> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        match client.get_opts(path, options).await {
            Ok(result) => Ok(result),
            Err(error) => {
                let error = map_object_error(error, bucket, key);
                if error.is_not_found() {
                    return Err(error);
                }
                // S3 answers 416 to a range starting past the end; tell
                // it apart from other failures by the object's size.
                let meta = self.head(bucket, key).await?;
                clamp_range(Some(range), meta.size)?;
                Err(error)
            }
        }
    }
}

/// The `object_store` path of a validated key, kept exactly as written.
pub(crate) fn object_path(key: &str) -> Result<Path> {
    Path::parse(key).map_err(|e| Error::invalid("object key", format!("`{key}` is not a valid S3 key: {e}")))
}

/// `object_store` metadata as the trait reports it.
fn meta(bucket: &str, key: &str, meta: &object_store::ObjectMeta) -> Result<ObjectMeta> {
    let nanos = i128::from(meta.last_modified.timestamp()) * 1_000_000_000
        + i128::from(meta.last_modified.timestamp_subsec_nanos());
    let last_modified = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| Error::backend(BACKEND, e))?;
    Ok(ObjectMeta {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size: meta.size,
        last_modified,
    })
}

impl fmt::Debug for S3ObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buckets = self.clients.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("S3ObjectStore")
            .field("endpoint", &self.config.endpoint_label())
            .field("buckets", &buckets)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    /// Streams `body` to `bucket/key`: one `PUT` when it ends within the
    /// first part, a multipart upload otherwise.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad location; [`Error::NotFound`] for a
    /// missing bucket when [`S3Config::create_missing_buckets`] is off;
    /// [`Error::Backend`] when the body or the server fails, after which
    /// no object is left and an object already there is unchanged.
    ///
    /// # Cancel safety
    /// Dropping the future leaves no object (see [`S3ObjectStore`]).
    async fn put(&self, bucket: &str, key: &str, body: ByteStream) -> Result<ObjectMeta> {
        crate::put::put(self, bucket, key, body).await
    }

    /// # Errors
    /// [`Error::Invalid`] for a bad location or a range starting past the
    /// end; [`Error::NotFound`] for a missing object or bucket. A body
    /// chunk fails with an [`std::io::Error`] wrapping the client's error.
    async fn get(&self, bucket: &str, key: &str, range: Option<Range<u64>>) -> Result<GetResult> {
        validate_location(bucket, key)?;
        let path = object_path(key)?;
        let client = self.client(bucket)?;
        let result = match range {
            None => client
                .get_opts(&path, GetOptions::default())
                .await
                .map_err(|e| map_object_error(e, bucket, key))?,
            // HTTP cannot ask for zero bytes (nor a reversed range): the
            // object's size decides between an empty body and Invalid.
            Some(range) if range.start >= range.end => {
                let object = self.head(bucket, key).await?;
                let range = clamp_range(Some(range), object.size)?;
                return Ok(GetResult {
                    meta: object,
                    range,
                    body: futures::stream::empty().boxed(),
                });
            }
            Some(range) => self.ranged_get(&client, bucket, key, &path, range).await?,
        };
        Ok(GetResult {
            meta: meta(bucket, key, &result.meta)?,
            range: result.range.clone(),
            body: result.into_stream().map_err(std::io::Error::from).boxed(),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        validate_location(bucket, key)?;
        let path = object_path(key)?;
        let found = self
            .client(bucket)?
            .head(&path)
            .await
            .map_err(|e| map_object_error(e, bucket, key))?;
        meta(bucket, key, &found)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        validate_location(bucket, key)?;
        let path = object_path(key)?;
        match self.client(bucket)?.delete(&path).await {
            Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(error) => Err(map_object_error(error, bucket, key)),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let client = self.client(bucket)?;
        let prefix = (!prefix.is_empty()).then_some(prefix);
        let mut listed = Vec::new();
        let mut page_token = None;
        loop {
            let options = PaginatedListOptions {
                page_token: page_token.take(),
                ..PaginatedListOptions::default()
            };
            let page = match client.list_paginated(prefix, options).await {
                Ok(page) => page,
                Err(error) => {
                    // object_store reports NoSuchBucket as a generic error.
                    if self.control.head_bucket(bucket).await? == BucketState::Missing {
                        return Ok(Vec::new());
                    }
                    return Err(Error::backend(BACKEND, error));
                }
            };
            for object in &page.result.objects {
                listed.push(meta(bucket, object.location.as_ref(), object)?);
            }
            match page.page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// `HEAD` of the first bucket given to [`S3ObjectStore::connect`], or a
    /// bucket listing when there is none; one request, no retries.
    ///
    /// # Errors
    /// [`Error::Backend`] with an [`S3Error`](crate::S3Error) naming the
    /// endpoint; [`Error::NotFound`] when the bucket is missing.
    async fn ping(&self) -> Result<()> {
        match &self.ping_bucket {
            Some(bucket) => match self.control.head_bucket(bucket).await? {
                BucketState::Exists => Ok(()),
                BucketState::Missing => Err(Error::not_found(format!(
                    "bucket `{bucket}` at {}",
                    self.config.endpoint_label()
                ))),
            },
            None => self.control.list_buckets().await,
        }
    }
}
