//! [`S3Config`]: where the S3 server is, how requests are signed, and how
//! large objects are streamed.

use std::fmt;
use std::time::Duration;

use dtask_core::{Error, Result};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ClientOptions, RetryConfig};
use url::Url;

use crate::error::BACKEND;

/// The region used when none is given, and the one a local server expects.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The default multipart part size: 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// The smallest part S3 accepts (every part but the last): 5 MiB.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest part S3 accepts: 5 GiB.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// The default number of parts of one object uploaded at the same time.
pub const DEFAULT_MAX_CONCURRENT_PARTS: usize = 4;

/// How to reach and use an S3-compatible server (AWS S3, MinIO, s3s-fs...).
///
/// Start from [`S3Config::aws`] or [`S3Config::endpoint`] and adjust with
/// the `with_*` methods; every field is public too.
///
/// # Memory
/// A [`put`](dtask_core::infra::ObjectStore::put) holds at most one part
/// being filled plus [`max_concurrent_parts`](Self::max_concurrent_parts)
/// parts in flight: about `part_size × (max_concurrent_parts + 1)` bytes
/// plus one body chunk (40 MiB with the defaults), whatever the object's
/// size. A body that ends
/// within the first part is sent as one `PUT` and holds at most
/// `part_size` bytes.
///
/// ```
/// use dtask_s3::S3Config;
///
/// let config = S3Config::endpoint("http://127.0.0.1:9000", "minioadmin", "minioadmin")
///     .with_part_size(16 * 1024 * 1024)
///     .with_max_concurrent_parts(2);
/// assert!(config.allow_http);
/// assert_eq!(config.region, "us-east-1");
/// ```
#[derive(Clone)]
pub struct S3Config {
    /// The server's base URL (`http://127.0.0.1:9000`), or `None` for AWS
    /// S3 in [`region`](Self::region).
    pub endpoint: Option<String>,
    /// The signing region (default `us-east-1`).
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (never printed by `Debug`).
    pub secret_access_key: String,
    /// Allows a plain `http://` endpoint (default: only when the endpoint
    /// given to [`S3Config::endpoint`] starts with `http://`).
    pub allow_http: bool,
    /// Addresses buckets as `{bucket}.{host}` instead of `{host}/{bucket}`
    /// (default `false`: path style, which every local server supports).
    pub virtual_hosted_style: bool,
    /// Whether [`S3ObjectStore::connect`](crate::S3ObjectStore::connect)
    /// creates the buckets it is given (default `true`).
    pub create_buckets_on_start: bool,
    /// Whether a `put` to a bucket that does not exist creates the bucket
    /// and tries once more (default `true`), so that a store behaves like
    /// the in-memory one, where buckets need no creation.
    pub create_missing_buckets: bool,
    /// The size of one multipart part, 5 MiB to 5 GiB (default 8 MiB). An
    /// object of at most this size is written with a single `PUT`.
    pub part_size: usize,
    /// How many parts of one object are uploaded at the same time
    /// (default 4, at least 1).
    pub max_concurrent_parts: usize,
    /// How long establishing a connection may take (default 5 s).
    pub connect_timeout: Duration,
    /// The longest wait for the server (default 30 s): sending a request
    /// and receiving its answer's headers must fit in it (so one part, or a
    /// single `PUT`, must upload within it), and so must each wait for the
    /// next chunk of a `get` body. A `get` body as a whole has no time
    /// limit, so a slow reader can stream a large object; but a body left
    /// unread for longer than this fails (or resumes, within the retry
    /// budget).
    pub io_timeout: Duration,
    /// How many times a failed request is retried (default 3).
    pub max_retries: usize,
    /// How long after its first attempt a request is no longer retried
    /// (default 30 s).
    pub retry_timeout: Duration,
}

impl S3Config {
    /// AWS S3 in `region`, with static credentials.
    pub fn aws(
        region: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: None,
            region: region.into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            allow_http: false,
            virtual_hosted_style: false,
            create_buckets_on_start: true,
            create_missing_buckets: true,
            part_size: DEFAULT_PART_SIZE,
            max_concurrent_parts: DEFAULT_MAX_CONCURRENT_PARTS,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        }
    }

    /// An S3-compatible server at `endpoint` (MinIO, s3s-fs...), in region
    /// `us-east-1`. A `http://` endpoint turns [`allow_http`](Self::allow_http) on.
    pub fn endpoint(
        endpoint: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        let endpoint = endpoint.into();
        let allow_http = endpoint.starts_with("http://");
        Self {
            endpoint: Some(endpoint),
            allow_http,
            ..Self::aws(DEFAULT_REGION, access_key_id, secret_access_key)
        }
    }

    /// Sets the signing region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Allows or forbids a plain `http://` endpoint.
    pub fn with_allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Chooses virtual-hosted-style (`true`) or path-style (`false`) URLs.
    pub fn with_virtual_hosted_style(mut self, virtual_hosted: bool) -> Self {
        self.virtual_hosted_style = virtual_hosted;
        self
    }

    /// Whether `connect` creates the buckets it is given.
    pub fn with_create_buckets_on_start(mut self, create: bool) -> Self {
        self.create_buckets_on_start = create;
        self
    }

    /// Whether a `put` to a missing bucket creates it.
    pub fn with_create_missing_buckets(mut self, create: bool) -> Self {
        self.create_missing_buckets = create;
        self
    }

    /// Sets the multipart part size (checked when the store is built).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// Sets how many parts of one object are uploaded at the same time.
    pub fn with_max_concurrent_parts(mut self, parts: usize) -> Self {
        self.max_concurrent_parts = parts;
        self
    }

    /// Sets the connection timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the longest wait for the server.
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Sets how often and for how long a failed request is retried.
    pub fn with_retries(mut self, max_retries: usize, retry_timeout: Duration) -> Self {
        self.max_retries = max_retries;
        self.retry_timeout = retry_timeout;
        self
    }

    /// Checks the settings without contacting the server.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting: an endpoint that is not an
    /// `http`/`https` URL, a `http://` endpoint without
    /// [`allow_http`](Self::allow_http), an empty region, a part size
    /// outside 5 MiB..=5 GiB, or no concurrency.
    pub fn validate(&self) -> Result<()> {
        if let Some(endpoint) = &self.endpoint {
            let url = Url::parse(endpoint)
                .map_err(|e| Error::invalid("S3 endpoint", format!("`{endpoint}` is not a URL: {e}")))?;
            match url.scheme() {
                "https" => {}
                "http" if self.allow_http => {}
                "http" => {
                    return Err(Error::invalid(
                        "S3 endpoint",
                        format!("`{endpoint}` is plain http: set allow_http to use it"),
                    ));
                }
                other => {
                    return Err(Error::invalid(
                        "S3 endpoint",
                        format!("`{endpoint}` has scheme `{other}`, not http or https"),
                    ));
                }
            }
            if url.host_str().is_none() {
                return Err(Error::invalid("S3 endpoint", format!("`{endpoint}` has no host")));
            }
        }
        if self.region.is_empty() {
            return Err(Error::invalid("S3 region", "the region is empty"));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(Error::invalid(
                "S3 part size",
                format!("{} bytes is outside 5 MiB..=5 GiB", self.part_size),
            ));
        }
        if self.max_concurrent_parts == 0 {
            return Err(Error::invalid(
                "S3 part concurrency",
                "at least one part must be in flight",
            ));
        }
        Ok(())
    }

    /// The endpoint as people read it in errors: the URL, or `AWS S3
    /// (region)`.
    pub fn endpoint_label(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("AWS S3 ({})", self.region),
        }
    }

    /// The base URL of the service (where `ListBuckets` goes).
    pub(crate) fn service_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        }
    }

    /// The URL of `bucket` itself, in the configured addressing style.
    pub(crate) fn bucket_url(&self, bucket: &str) -> Result<String> {
        match (&self.endpoint, self.virtual_hosted_style) {
            (Some(endpoint), false) => Ok(format!("{}/{bucket}", endpoint.trim_end_matches('/'))),
            (Some(endpoint), true) => {
                let mut url = Url::parse(endpoint)
                    .map_err(|e| Error::invalid("S3 endpoint", format!("`{endpoint}` is not a URL: {e}")))?;
                let host = url.host_str().unwrap_or_default().to_owned();
                url.set_host(Some(&format!("{bucket}.{host}")))
                    .map_err(|e| Error::invalid("S3 endpoint", format!("bucket host for `{bucket}`: {e}")))?;
                Ok(url.as_str().trim_end_matches('/').to_owned())
            }
            (None, true) => Ok(format!("https://{bucket}.s3.{}.amazonaws.com", self.region)),
            (None, false) => Ok(format!("https://s3.{}.amazonaws.com/{bucket}", self.region)),
        }
    }

    /// The HTTP client settings shared by object_store and the bucket
    /// requests.
    ///
    /// object_store's default is a 30 s limit on a whole request, body
    /// included, and its retry budget is counted from the first attempt: a
    /// `get` streamed for longer than that fails for good. A read timeout
    /// (reset by every chunk) bounds waits instead.
    pub(crate) fn client_options(&self) -> ClientOptions {
        ClientOptions::new()
            .with_allow_http(self.allow_http)
            .with_connect_timeout(self.connect_timeout)
            .with_timeout_disabled()
            .with_read_timeout(self.io_timeout)
    }

    /// An object_store client bound to `bucket`.
    pub(crate) fn amazon_s3(&self, bucket: &str) -> Result<AmazonS3> {
        let retry = RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_client_options(self.client_options())
            .with_retry(retry)
            .with_bucket_name(bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_virtual_hosted_style_request(self.virtual_hosted_style);
        if let Some(endpoint) = &self.endpoint {
            // object_store expects a virtual-hosted endpoint to name the bucket.
            let endpoint = if self.virtual_hosted_style {
                self.bucket_url(bucket)?
            } else {
                endpoint.clone()
            };
            builder = builder.with_endpoint(endpoint);
        }
        builder.build().map_err(|e| Error::backend(BACKEND, e))
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint_label())
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"******")
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("create_buckets_on_start", &self.create_buckets_on_start)
            .field("create_missing_buckets", &self.create_missing_buckets)
            .field("part_size", &self.part_size)
            .field("max_concurrent_parts", &self.max_concurrent_parts)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> S3Config {
        S3Config::endpoint("http://127.0.0.1:9000/", "key", "hunter2")
    }

    #[test]
    fn an_http_endpoint_allows_http_and_validates() {
        let config = local();
        assert!(config.allow_http);
        config.validate().expect("a valid local config");
    }

    #[test]
    fn plain_http_without_allow_http_is_refused_with_a_clear_reason() {
        let error = local().with_allow_http(false).validate().unwrap_err();
        assert!(error.to_string().contains("allow_http"), "{error}");
    }

    #[test]
    fn part_size_and_concurrency_are_checked() {
        assert!(local().with_part_size(MIN_PART_SIZE - 1).validate().is_err());
        assert!(local().with_part_size(MIN_PART_SIZE).validate().is_ok());
        assert!(local().with_max_concurrent_parts(0).validate().is_err());
        assert!(local().with_region("").validate().is_err());
        assert!(S3Config::endpoint("ftp://host", "k", "s").validate().is_err());
        assert!(S3Config::endpoint("not a url", "k", "s").validate().is_err());
    }

    #[test]
    fn bucket_urls_follow_the_addressing_style() {
        assert_eq!(local().bucket_url("files").unwrap(), "http://127.0.0.1:9000/files");
        let virtual_hosted = S3Config::endpoint("http://s3.local:9000", "k", "s").with_virtual_hosted_style(true);
        assert_eq!(
            virtual_hosted.bucket_url("files").unwrap(),
            "http://files.s3.local:9000"
        );
        let aws = S3Config::aws("eu-west-3", "k", "s");
        assert_eq!(
            aws.bucket_url("files").unwrap(),
            "https://s3.eu-west-3.amazonaws.com/files"
        );
        assert_eq!(
            aws.with_virtual_hosted_style(true).bucket_url("files").unwrap(),
            "https://files.s3.eu-west-3.amazonaws.com"
        );
        assert_eq!(local().service_url(), "http://127.0.0.1:9000");
    }

    #[test]
    fn debug_hides_the_secret() {
        let debug = format!("{:?}", local());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("******"));
    }
}
