//! Bucket-level requests that `object_store` does not make: create a
//! bucket, check that one exists, list buckets (the ping).
//!
//! They are signed with SigV4 by `object_store`'s own [`AwsAuthorizer`]
//! (public API, the same code that signs every object request) and sent
//! through its HTTP client, so they need no other AWS crate. They are sent
//! once, without retries: they serve start-up and readiness checks, which
//! must fail fast when the server is not there.

use bytes::Bytes;
use dtask_core::Result;
use http::{Method, StatusCode};
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};

use crate::config::{DEFAULT_REGION, S3Config};
use crate::error::{BACKEND, S3Error, xml_element};

/// Whether a bucket exists, as `HEAD /{bucket}` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BucketState {
    /// It exists and these credentials may use it.
    Exists,
    /// There is no such bucket.
    Missing,
}

/// An answer: its status and, for an error, the S3 code and message.
struct Answer {
    status: StatusCode,
    code: String,
    message: String,
}

/// Sends signed bucket-level requests.
#[derive(Debug)]
pub(crate) struct ControlClient {
    http: HttpClient,
    credential: AwsCredential,
    config: S3Config,
}

impl ControlClient {
    /// A client for the server `config` names.
    pub(crate) fn new(config: &S3Config) -> Result<Self> {
        let http = ReqwestConnector::default()
            .connect(&config.client_options())
            .map_err(|e| dtask_core::Error::backend(BACKEND, e))?;
        let credential = AwsCredential {
            key_id: config.access_key_id.clone(),
            secret_key: config.secret_access_key.clone(),
            token: None,
        };
        Ok(Self {
            http,
            credential,
            config: config.clone(),
        })
    }

    async fn send(&self, method: Method, url: &str, body: Bytes) -> Result<Answer> {
        let endpoint = self.config.endpoint_label();
        let mut request: HttpRequest = http::Request::builder()
            .method(method)
            .uri(url)
            .body(HttpRequestBody::from(body))
            .map_err(|e| dtask_core::Error::invalid("S3 endpoint", format!("`{url}`: {e}")))?;
        AwsAuthorizer::new(&self.credential, "s3", &self.config.region)
            .try_authorize(&mut request, None)
            .map_err(|e| dtask_core::Error::backend(BACKEND, e))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|source| S3Error::Unreachable {
                endpoint: endpoint.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Answer {
                status,
                code: String::new(),
                message: String::new(),
            });
        }
        // An error body is a short XML document; a HEAD answer has none.
        let body = response
            .into_body()
            .bytes()
            .await
            .map_err(|source| S3Error::Unreachable { endpoint, source })?;
        let body = String::from_utf8_lossy(&body);
        Ok(Answer {
            status,
            // A HEAD answer has no body: the status's reason stands in.
            code: xml_element(&body, "Code")
                .or(status.canonical_reason())
                .unwrap_or_default()
                .to_owned(),
            message: xml_element(&body, "Message").unwrap_or_default().to_owned(),
        })
    }

    fn rejected(&self, operation: String, answer: Answer) -> dtask_core::Error {
        S3Error::Rejected {
            operation,
            endpoint: self.config.endpoint_label(),
            status: answer.status.as_u16(),
            code: answer.code,
            message: answer.message,
        }
        .into()
    }

    /// `HEAD /{bucket}`: whether the bucket exists.
    ///
    /// # Errors
    /// [`S3Error::Unreachable`] when nothing answers; [`S3Error::Rejected`]
    /// for any other answer than 200 or 404 (403: not ours, 301: another
    /// region...).
    pub(crate) async fn head_bucket(&self, bucket: &str) -> Result<BucketState> {
        let url = self.config.bucket_url(bucket)?;
        let answer = self.send(Method::HEAD, &url, Bytes::new()).await?;
        match answer.status {
            status if status.is_success() => Ok(BucketState::Exists),
            StatusCode::NOT_FOUND => Ok(BucketState::Missing),
            _ => Err(self.rejected(format!("check of bucket `{bucket}`"), answer)),
        }
    }

    /// Creates `bucket` unless it exists; an existing bucket that these
    /// credentials can use is a success.
    ///
    /// # Errors
    /// [`S3Error::Unreachable`], [`S3Error::Rejected`], or
    /// [`S3Error::BucketTaken`] when another account owns the name.
    pub(crate) async fn ensure_bucket(&self, bucket: &str) -> Result<()> {
        if self.head_bucket(bucket).await? == BucketState::Exists {
            return Ok(());
        }
        let url = self.config.bucket_url(bucket)?;
        let answer = self.send(Method::PUT, &url, self.create_bucket_body()).await?;
        if answer.status.is_success() || answer.code == "BucketAlreadyOwnedByYou" {
            tracing::debug!(bucket, endpoint = %self.config.endpoint_label(), "created bucket");
            return Ok(());
        }
        if answer.code == "BucketAlreadyExists" || answer.status.is_server_error() {
            // Created meanwhile by someone else: ours to use if we can see it
            // (servers such as s3s-fs answer this to their own account too,
            // and a 500 when two processes create the same bucket at once).
            return match self.head_bucket(bucket).await? {
                BucketState::Exists => Ok(()),
                BucketState::Missing if answer.status.is_server_error() => {
                    Err(self.rejected(format!("creation of bucket `{bucket}`"), answer))
                }
                BucketState::Missing => Err(S3Error::BucketTaken {
                    bucket: bucket.to_owned(),
                    endpoint: self.config.endpoint_label(),
                }
                .into()),
            };
        }
        Err(self.rejected(format!("creation of bucket `{bucket}`"), answer))
    }

    /// The `CreateBucket` body: empty in `us-east-1`, a location constraint
    /// elsewhere (AWS refuses a bucket outside us-east-1 without one).
    fn create_bucket_body(&self) -> Bytes {
        if self.config.region == DEFAULT_REGION {
            return Bytes::new();
        }
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            self.config.region
        )
        .into()
    }

    /// `GET /` (`ListBuckets`): that the server answers and accepts the
    /// credentials.
    ///
    /// # Errors
    /// [`S3Error::Unreachable`] or [`S3Error::Rejected`].
    pub(crate) async fn list_buckets(&self) -> Result<()> {
        let url = format!("{}/", self.config.service_url());
        let answer = self.send(Method::GET, &url, Bytes::new()).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(self.rejected("listing of buckets".to_owned(), answer))
        }
    }
}
