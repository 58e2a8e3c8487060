//! A client of the dtask HTTP API for CreateZipFromFiles: submit files
//! (streamed from disk), follow the task's Server-Sent Events, cancel it,
//! download the archive. The `submit` command of the demo binary is built
//! on it.

mod error;
mod events;
pub mod sse;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dtask::TaskProgress;
use reqwest::multipart::{Form, Part};
use reqwest::{RequestBuilder, Response, Url};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

pub use error::ClientError;
pub use events::{ProgressEvents, TaskFollower};

/// The submit route of CreateZipFromFiles.
pub const SUBMIT_PATH: &str = "/api/tasks/create-zip-from-files";
/// Where VideoTranscode is submitted.
pub const SUBMIT_VIDEO_PATH: &str = "/api/tasks/video-transcode";

/// The `202 Accepted` answer to a submit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    /// The new task's id.
    pub task_id: String,
    /// Its status when accepted.
    pub status: String,
    /// Where to follow it.
    pub links: Links,
}

/// The links of a submitted task (paths or absolute URLs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    /// The progress snapshot (polling).
    pub status: String,
    /// The Server-Sent Events stream.
    pub stream: String,
    /// The WebSocket.
    pub ws: String,
    /// The typed result.
    pub result: String,
    /// The produced archive.
    pub download: String,
    /// `DELETE` here to cancel.
    pub cancel: String,
}

/// What the server said to a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAnswer {
    /// Accepted: the running step's token fires, then compensation runs.
    Requested,
    /// Refused (the task already ended, or cannot be cancelled): the
    /// problem's title and detail.
    Refused(String),
}

/// A client of one dtask server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
}

impl ApiClient {
    /// A client of the server at `server` (e.g. `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// [`ClientError::InvalidServer`] when `server` is not an `http(s)` URL.
    pub fn new(server: &str) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidServer {
            url: server.to_owned(),
            reason,
        };
        let base = Url::parse(server).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected an http:// or https:// URL".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { http, base })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// Uploads `files` (streamed from disk, never read whole) to create a
    /// zip archive named `output_file_name`. The scalar fields precede the
    /// files, as the server requires.
    ///
    /// # Errors
    /// [`ClientError::File`] for an unreadable file, [`ClientError::Unreachable`],
    /// [`ClientError::Problem`] when the server refuses the upload.
    pub async fn submit_zip(
        &self,
        files: &[PathBuf],
        output_file_name: Option<&str>,
    ) -> Result<Submitted, ClientError> {
        let mut form = Form::new();
        if let Some(name) = output_file_name {
            form = form.text("outputFileName", name.to_owned());
        }
        form = form.text("listening", "sse");
        for path in files {
            form = form.part("files", file_part(path).await?);
        }
        self.submit_form(SUBMIT_PATH, form).await
    }

    /// Uploads the video at `path` (streamed from disk) for VideoTranscode;
    /// `notify_url` receives the result when given.
    ///
    /// # Errors
    /// As [`submit_zip`](Self::submit_zip).
    pub async fn submit_video(&self, path: &Path, notify_url: Option<&str>) -> Result<Submitted, ClientError> {
        let mut form = Form::new();
        if let Some(url) = notify_url {
            form = form.text("notifyUrl", url.to_owned());
        }
        // Every task takes its files from `files` parts; this one's go to
        // its request's `videoFile`.
        form = form.text("listening", "sse").part("files", file_part(path).await?);
        self.submit_form(SUBMIT_VIDEO_PATH, form).await
    }

    async fn submit_form(&self, path: &str, form: Form) -> Result<Submitted, ClientError> {
        let response = self.send(self.http.post(self.url(path)?).multipart(form)).await?;
        json(response).await
    }

    /// The typed result at `link` (a completed task's `result` link).
    ///
    /// # Errors
    /// [`ClientError::Problem`] when the task has not completed; transport
    /// errors; [`ClientError::Protocol`] for a result of another shape.
    pub async fn result<R: serde::de::DeserializeOwned>(&self, link: &str) -> Result<R, ClientError> {
        json(self.send(self.http.get(self.url(link)?)).await?).await
    }

    /// The progress snapshot at `link` (a task's `status` link).
    ///
    /// # Errors
    /// [`ClientError::Problem`] for an unknown task; transport errors.
    pub async fn status(&self, link: &str) -> Result<TaskProgress, ClientError> {
        json(self.send(self.http.get(self.url(link)?)).await?).await
    }

    /// Opens the Server-Sent Events stream at `link`, resuming after
    /// `last_event_id` when given.
    ///
    /// # Errors
    /// [`ClientError::Problem`] for an unknown task; transport errors.
    pub async fn events(&self, link: &str, last_event_id: Option<&str>) -> Result<ProgressEvents, ClientError> {
        let mut request = self.http.get(self.url(link)?).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        Ok(ProgressEvents::new(self.send(request).await?))
    }

    /// Follows the task whose stream is at `link` until its terminal
    /// snapshot, reconnecting when the stream breaks.
    pub fn follow(&self, link: &str) -> TaskFollower<'_> {
        TaskFollower::new(self, link)
    }

    /// Asks the server to cancel the task (`DELETE` on its `cancel` link).
    ///
    /// # Errors
    /// Transport errors, and problems other than `409 Conflict`.
    pub async fn cancel(&self, link: &str) -> Result<CancelAnswer, ClientError> {
        match self.send(self.http.delete(self.url(link)?)).await {
            Ok(_) => Ok(CancelAnswer::Requested),
            Err(ClientError::Problem {
                status: 409,
                title,
                detail,
            }) => Ok(CancelAnswer::Refused(match detail {
                Some(detail) => format!("{title}: {detail}"),
                None => title,
            })),
            Err(error) => Err(error),
        }
    }

    /// Downloads the archive at `link` into `output`, through
    /// [`partial_path`]`(output)` renamed once complete. Returns its size.
    ///
    /// # Errors
    /// Transport errors and problems; [`ClientError::File`] when `output`
    /// cannot be written; [`ClientError::Protocol`] for a truncated body.
    ///
    /// # Cancel safety
    /// Not cancel safe: a dropped download leaves the partial file, which
    /// the caller removes.
    pub async fn download(&self, link: &str, output: &Path) -> Result<u64, ClientError> {
        let url = self.url(link)?;
        let mut response = self.send(self.http.get(url.clone())).await?;
        let expected = response.content_length();
        let partial = partial_path(output);
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(ClientError::file("write", &partial))?;
        let copied = async {
            let mut written = 0u64;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| ClientError::transport(self.server(), url.as_str(), e))?
            {
                file.write_all(&chunk)
                    .await
                    .map_err(ClientError::file("write", &partial))?;
                written += chunk.len() as u64;
            }
            file.sync_all().await.map_err(ClientError::file("write", &partial))?;
            match expected {
                Some(expected) if expected != written => Err(ClientError::Protocol(format!(
                    "the download ended after {written} of {expected} bytes"
                ))),
                _ => Ok(written),
            }
        }
        .await;
        let renamed = match copied {
            Ok(written) => tokio::fs::rename(&partial, output)
                .await
                .map(|()| written)
                .map_err(ClientError::file("write", output)),
            Err(error) => Err(error),
        };
        if renamed.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        renamed
    }

    fn url(&self, link: &str) -> Result<Url, ClientError> {
        self.base
            .join(link)
            .map_err(|e| ClientError::Protocol(format!("bad link `{link}`: {e}")))
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let request = request
            .build()
            .map_err(|e| ClientError::Protocol(format!("cannot build the request: {e}")))?;
        let url = request.url().to_string();
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| ClientError::transport(self.server(), &url, e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(problem(response).await)
        }
    }
}

/// Where [`ApiClient::download`] writes before the rename: `OUT.part`.
pub fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    output.with_file_name(name)
}

async fn file_part(path: &Path) -> Result<Part, ClientError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(ClientError::file("read", path))?;
    let length = file.metadata().await.map_err(ClientError::file("read", path))?.len();
    let name = path
        .file_name()
        .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    Part::stream_with_length(body, length)
        .file_name(name)
        .mime_str("application/octet-stream")
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

async fn json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Protocol(format!("cannot read the answer: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("cannot read the answer: {e}")))
}

/// Turns an error response into [`ClientError::Problem`], reading an RFC
/// 9457 body when there is one.
async fn problem(response: Response) -> ClientError {
    #[derive(Deserialize)]
    struct Body {
        title: Option<String>,
        detail: Option<String>,
    }
    let status = response.status();
    let reason = status.canonical_reason().unwrap_or("error").to_owned();
    let text = response.text().await.unwrap_or_default();
    let (title, detail) = match serde_json::from_str::<Body>(&text) {
        Ok(body) => (body.title.unwrap_or(reason), body.detail),
        Err(_) if text.trim().is_empty() => (reason, None),
        Err(_) => (reason, Some(text.chars().take(300).collect())),
    };
    ClientError::Problem {
        status: status.as_u16(),
        title,
        detail,
    }
}
