//! Reading a `multipart/form-data` submission part by part.
//!
//! Scalar fields come first and are read whole (they are small); file
//! parts follow and are streamed: each chunk is checked against the
//! limits, fed to the fingerprint and forwarded to the task's upload step
//! through a bounded channel, so a file is never held in memory.

use axum::body::Body;
use bytes::Bytes;
use dtask_core::IncomingFile;
use multer::Field;
use tokio::sync::mpsc::Sender;

use super::channel::{self, Msg};
use super::fingerprint::Fingerprint;
use crate::config::UploadLimits;
use crate::problem::{ApiResult, Problem, kinds};

/// The name of the parts that carry files.
pub(crate) const FILES_PART: &str = "files";

/// The longest scalar field value, in bytes.
const MAX_FIELD_BYTES: usize = 64 * 1024;

/// How many chunks of one file may wait for the upload step.
const BODY_CHUNKS: usize = 8;

/// How much of an unwanted body is read (and discarded) before a problem
/// is answered, so the client sees the answer instead of a reset
/// connection.
pub(crate) const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// What a part's boundary and headers count for when draining.
const PART_OVERHEAD: u64 = 128;

/// A multipart body being read, with what it has used of the limits.
pub(crate) struct MultipartReader {
    inner: multer::Multipart<'static>,
    limits: UploadLimits,
    bytes: u64,
    files: usize,
}

/// The senders a file part's bytes go to; none once the upload step has
/// stopped reading (the rest is then only checked and hashed).
struct Sinks {
    files: Option<Sender<Msg<IncomingFile>>>,
    body: Option<Sender<Msg<Bytes>>>,
}

impl Sinks {
    /// Tells the upload step the submission failed: the file being read
    /// fails, or the stream of files does.
    fn fail(&mut self, detail: &str) {
        let error = || std::io::Error::other(detail.to_owned());
        if let Some(body) = self.body.take() {
            let _ = body.try_send(Msg::Item(Err(error())));
        } else if let Some(files) = self.files.take() {
            let _ = files.try_send(Msg::Item(Err(error())));
        }
    }
}

impl MultipartReader {
    /// Reads `body`, split at `boundary`.
    pub(crate) fn new(body: Body, boundary: String, limits: UploadLimits) -> Self {
        Self {
            inner: multer::Multipart::new(body.into_data_stream(), boundary),
            limits,
            bytes: 0,
            files: 0,
        }
    }

    /// Reads the scalar fields, up to the first file part (returned
    /// unread) or the end.
    ///
    /// # Errors
    /// `400` for a malformed body, too many fields, a nameless or
    /// duplicate field, a value that is not UTF-8 or too long, or a file sent in a part not named
    /// `files`; `413` past the size limit.
    pub(crate) async fn read_fields(
        &mut self,
        fingerprint: &mut Fingerprint,
    ) -> ApiResult<(Vec<(String, String)>, Option<Field<'static>>)> {
        let mut fields: Vec<(String, String)> = Vec::new();
        while let Some(field) = self.next_field().await? {
            if is_file(&field) {
                check_files_part(&field)?;
                return Ok((fields, Some(field)));
            }
            if fields.len() >= self.limits.max_fields {
                return Err(Problem::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "too-many-fields",
                    "Too many fields",
                    format!("a submission may carry at most {} fields", self.limits.max_fields),
                ));
            }
            let name = field
                .name()
                .ok_or_else(|| kinds::invalid_request("a multipart part has no name"))?
                .to_owned();
            let value = self.read_value(&name, field).await?;
            if fields.iter().any(|(n, _)| *n == name) {
                return Err(kinds::invalid_request(format!("the field `{name}` is sent twice")));
            }
            fingerprint.field(&name, &value);
            fields.push((name, value));
        }
        Ok((fields, None))
    }

    /// Streams the file parts, from `first` to the end of the body, to
    /// `files` (or, without it, only checks and hashes them).
    ///
    /// # Errors
    /// `400` for too many files, a file name too long or a malformed
    /// body; `422` for a field after a file; `413` past the size limit. The upload
    /// step is told first, so it fails and removes what it stored.
    pub(crate) async fn pump(
        &mut self,
        first: Field<'static>,
        files: Option<Sender<Msg<IncomingFile>>>,
        fingerprint: &mut Fingerprint,
    ) -> ApiResult<()> {
        let mut sinks = Sinks { files, body: None };
        let result = self.pump_parts(first, &mut sinks, fingerprint).await;
        if let Err(problem) = &result {
            sinks.fail(problem.detail());
        }
        result
    }

    async fn pump_parts(
        &mut self,
        first: Field<'static>,
        sinks: &mut Sinks,
        fingerprint: &mut Fingerprint,
    ) -> ApiResult<()> {
        let mut next = Some(first);
        while let Some(field) = next.take() {
            self.pump_file(field, sinks, fingerprint).await?;
            next = self.next_field().await?;
        }
        if let Some(files) = sinks.files.take() {
            let _ = files.send(Msg::End).await;
        }
        Ok(())
    }

    async fn pump_file(
        &mut self,
        mut field: Field<'static>,
        sinks: &mut Sinks,
        fingerprint: &mut Fingerprint,
    ) -> ApiResult<()> {
        if !is_file(&field) {
            let name = field.name().unwrap_or_default();
            return Err(Problem::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "field-after-file",
                "Field after a file",
                format!(
                    "the field `{name}` comes after a file part: send every field before the first file \
                     (as S3's POST policy form requires)"
                ),
            ));
        }
        check_files_part(&field)?;
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(Problem::new(
                axum::http::StatusCode::BAD_REQUEST,
                "too-many-files",
                "Too many files",
                format!("a submission may carry at most {} files", self.limits.max_files),
            ));
        }
        let name = field.file_name().unwrap_or("file").to_owned();
        if name.len() > self.limits.max_file_name_bytes {
            return Err(Problem::new(
                axum::http::StatusCode::BAD_REQUEST,
                "file-name-too-long",
                "File name too long",
                format!(
                    "the file name `{}…` is {} bytes long; at most {} are allowed",
                    name.chars().take(32).collect::<String>(),
                    name.len(),
                    self.limits.max_file_name_bytes
                ),
            ));
        }
        fingerprint.file(&name);
        if let Some(files) = &sinks.files {
            let (sender, body) = channel::guarded(BODY_CHUNKS);
            let file = IncomingFile {
                name,
                content_type: field.content_type().map(ToString::to_string),
                size: None,
                body,
            };
            if files.send(Msg::Item(Ok(file))).await.is_ok() {
                sinks.body = Some(sender);
            } else {
                sinks.files = None;
            }
        }
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            self.count(chunk.len())?;
            fingerprint.chunk(&chunk);
            if let Some(body) = &sinks.body
                && body.send(Msg::Item(Ok(chunk))).await.is_err()
            {
                // The upload step stopped reading: it failed or was
                // cancelled. Read on, so the answer is clean.
                sinks.body = None;
                sinks.files = None;
            }
        }
        if let Some(body) = sinks.body.take() {
            let _ = body.send(Msg::End).await;
        }
        Ok(())
    }

    /// Reads and discards what is left of the body, up to
    /// [`DRAIN_LIMIT`] bytes.
    pub(crate) async fn drain(&mut self) {
        let mut drained = 0u64;
        while let Ok(Some(mut field)) = self.inner.next_field().await {
            // A part's headers count too, so a body of empty parts ends.
            drained += PART_OVERHEAD;
            while let Ok(Some(chunk)) = field.chunk().await {
                drained += chunk.len() as u64;
                if drained > DRAIN_LIMIT {
                    return;
                }
            }
        }
    }

    async fn next_field(&mut self) -> ApiResult<Option<Field<'static>>> {
        self.inner.next_field().await.map_err(malformed)
    }

    async fn read_value(&mut self, name: &str, mut field: Field<'static>) -> ApiResult<String> {
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            self.count(chunk.len())?;
            if value.len() + chunk.len() > MAX_FIELD_BYTES {
                return Err(kinds::invalid_request(format!(
                    "the field `{name}` is longer than {MAX_FIELD_BYTES} bytes"
                )));
            }
            value.extend_from_slice(&chunk);
        }
        String::from_utf8(value).map_err(|_| kinds::invalid_request(format!("the field `{name}` is not UTF-8 text")))
    }

    fn count(&mut self, len: usize) -> ApiResult<()> {
        self.bytes += len as u64;
        if self.bytes > self.limits.max_total_bytes {
            return Err(kinds::too_large(format!(
                "the upload exceeds the limit of {} bytes",
                self.limits.max_total_bytes
            )));
        }
        Ok(())
    }
}

/// Whether a part carries a file: it is named `files` or has a file name.
fn is_file(field: &Field<'_>) -> bool {
    field.name() == Some(FILES_PART) || field.file_name().is_some()
}

fn check_files_part(field: &Field<'_>) -> ApiResult<()> {
    match field.name() {
        Some(FILES_PART) => Ok(()),
        other => Err(kinds::invalid_request(format!(
            "the part `{}` carries a file: files are sent as `{FILES_PART}` parts",
            other.unwrap_or_default()
        ))),
    }
}

fn malformed(error: multer::Error) -> Problem {
    if let multer::Error::StreamReadFailed(cause) = &error {
        return kinds::unreadable_body(cause.as_ref());
    }
    kinds::invalid_request(format!("malformed multipart body: {error}"))
}
