//! The VideoTranscode task, the design's second worked example, on real
//! media: `ffprobe` reads the upload, `ffmpeg` encodes the renditions and
//! the thumbnail.
//!
//! | order | step | kind | host | notes |
//! |---|---|---|---|---|
//! | 1 | UploadVideo | file upload | Api | request `videoFile` into `raw-videos` |
//! | 2 | ExtractMetadata | custom | Worker | `ffprobe`: size, duration, codec, frame rate; not a video: fails for good |
//! | 3 | TranscodeAll | parallel group | | await all |
//! | 3 | Transcode720p | custom, in TranscodeAll | Worker | 5 retries, exponential from 2 s; only from sources ≥ 720 lines |
//! | 3 | Transcode1080p | custom, in TranscodeAll | Worker | as 720p; only from sources ≥ 1080 lines |
//! | 3 | Transcode4K | custom, in TranscodeAll | Worker | as 720p; only from sources of 2160 lines or more (taller than 1080, and never upscaled) |
//! | 4 | GenerateThumbnail | custom | Worker | a JPEG at 10 % of the duration |
//! | 5 | NotifyWebhook | custom | Worker | 1 retry, constant; only when the request names `notifyUrl` |
//!
//! Renditions are H.264 + AAC in MP4 with `-movflags +faststart`, stored in
//! `transcoded-videos` under keys that start with the task id (as the
//! built-in steps' keys do, so the reconciler finds orphans). A failed
//! transcode compensates its completed siblings (deleting their outputs),
//! never the skipped ones; a cancellation kills the running `ffmpeg` at
//! once and compensates.

mod ffmpeg;
mod notify;
mod steps;

use dtask::prelude::*;
use serde::{Deserialize, Serialize};

pub use ffmpeg::{Ffmpeg, MissingTool};
pub use notify::{Notifier, NotifierError};

/// The bucket of the uploaded sources.
pub const RAW_BUCKET: &str = "raw-videos";
/// The bucket of the renditions and thumbnails.
pub const TRANSCODED_BUCKET: &str = "transcoded-videos";

/// The input: a video file and, optionally, where to announce the result.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoTranscodeRequest {
    /// The uploaded video (consumed by UploadVideo on the API side).
    #[serde(skip)]
    pub video_file: Files,
    /// A URL that receives the response as JSON once the renditions exist
    /// (NotifyWebhook; public addresses only unless allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
}

/// What `ffprobe` says of a video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoMetadata {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in lines.
    pub height: u32,
    /// Length in seconds.
    pub duration_secs: f64,
    /// The video codec (`h264`, `vp9`...).
    pub codec: String,
    /// Frames per second (0 when unknown).
    pub frame_rate: f64,
    /// The container (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`...).
    pub container: String,
    /// Whether it has an audio stream.
    pub has_audio: bool,
}

/// One stored rendition (the data of a transcode step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rendition {
    /// `720p`, `1080p` or `2160p`.
    pub name: String,
    /// The bucket holding it.
    pub bucket: String,
    /// Its key (starting with the task id).
    pub key: String,
    /// Frame width, as `ffprobe` reads it back.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Size in bytes.
    pub size: u64,
    /// Length in seconds.
    pub duration_secs: f64,
}

/// The stored thumbnail (the data of GenerateThumbnail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thumbnail {
    /// The bucket holding it.
    pub bucket: String,
    /// Its key (starting with the task id).
    pub key: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub size: u64,
    /// Where in the video it was taken, in seconds.
    pub at_secs: f64,
}

/// The data of NotifyWebhook: who was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notified {
    /// The URL that took the notification.
    pub url: String,
    /// The HTTP status it answered.
    pub status: u16,
}

/// The output: the source's metadata, every rendition made (smallest
/// first) and the thumbnail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoTranscodeResponse {
    /// What the source is.
    pub source: VideoMetadata,
    /// The renditions made; those taller than the source are not.
    pub renditions: Vec<Rendition>,
    /// The thumbnail.
    pub thumbnail: Thumbnail,
    /// The notification, when the request asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<Notified>,
}

/// Transcodes an uploaded video into 720p, 1080p and 4K renditions (those
/// the source is tall enough for), with a thumbnail.
#[dtask::task(
    name = "VideoTranscode",
    request = VideoTranscodeRequest,
    response = VideoTranscodeResponse,
    queue = "video-processing",
    max_retries = 1,
    timeout_secs = 3600,
    serialization = Json,
    cancellable
)]
#[file_upload(UploadVideo, order = 1, bucket = "raw-videos", source = request.video_file)]
#[placement(UploadVideo, host = Api)]
#[custom_step(ExtractMetadata, order = 2, inputs(upload_video), output = VideoMetadata)]
#[parallel_group(TranscodeAll, order = 3, distribute)]
#[custom_step(Transcode720p, order = 3, group = TranscodeAll, inputs(upload_video, extract_metadata), output = Rendition)]
#[retry(Transcode720p, max_retries = 5, backoff = Exponential, base_delay_ms = 2000)]
#[condition(Transcode720p, extract_metadata.height >= 720)]
#[compensation(Transcode720p)]
#[custom_step(Transcode1080p, order = 3, group = TranscodeAll, inputs(upload_video, extract_metadata), output = Rendition)]
#[retry(Transcode1080p, max_retries = 5, backoff = Exponential, base_delay_ms = 2000)]
#[condition(Transcode1080p, extract_metadata.height >= 1080)]
#[compensation(Transcode1080p)]
#[custom_step(Transcode4K, order = 3, group = TranscodeAll, inputs(upload_video, extract_metadata), output = Rendition)]
#[retry(Transcode4K, max_retries = 5, backoff = Exponential, base_delay_ms = 2000)]
#[condition(Transcode4K, extract_metadata.height >= 2160)]
#[compensation(Transcode4K)]
#[custom_step(GenerateThumbnail, order = 4, inputs(upload_video, extract_metadata), output = Thumbnail)]
#[compensation(GenerateThumbnail)]
#[custom_step(NotifyWebhook, order = 5, inputs(extract_metadata, transcode720p, transcode1080p, transcode4_k, generate_thumbnail), output = Notified)]
#[retry(NotifyWebhook, max_retries = 1, backoff = Constant, base_delay_ms = 1000)]
#[condition(NotifyWebhook, request.notify_url.is_some())]
#[derive(Debug, Clone)]
pub struct VideoTranscode {
    ffmpeg: Ffmpeg,
    notifier: Notifier,
}

impl VideoTranscode {
    /// The task with these programs and this webhook client.
    pub fn new(ffmpeg: Ffmpeg, notifier: Notifier) -> Self {
        Self { ffmpeg, notifier }
    }

    /// The task as the environment configures it ([`Ffmpeg::from_env`],
    /// [`Notifier::from_env`]).
    ///
    /// # Errors
    /// A malformed `DTASK_WEBHOOK_SECRET`.
    pub fn from_env() -> Result<Self, NotifierError> {
        Ok(Self::new(Ffmpeg::from_env(), Notifier::from_env()?))
    }

    /// Its programs.
    pub fn ffmpeg(&self) -> &Ffmpeg {
        &self.ffmpeg
    }
}
