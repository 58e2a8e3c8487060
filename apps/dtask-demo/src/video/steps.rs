//! The steps of VideoTranscode.

use std::path::{Path, PathBuf};

use dtask::files::safe_file_name;
use dtask::prelude::*;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::video_transcode::{
    ExtractMetadataInput, GenerateThumbnailInput, NotifyWebhookInput, Outputs, Steps, Transcode4KInput,
    Transcode720pInput, Transcode1080pInput,
};
use super::{
    Rendition, TRANSCODED_BUCKET, Thumbnail, VideoMetadata, VideoTranscode, VideoTranscodeRequest,
    VideoTranscodeResponse,
};

/// The tallest thumbnail, in lines.
const THUMBNAIL_HEIGHT: u32 = 360;

impl Steps for VideoTranscode {
    async fn extract_metadata(
        &self,
        cx: &StepContext,
        input: ExtractMetadataInput<'_>,
    ) -> Result<VideoMetadata, StepError> {
        let source = local_source(cx, input.upload_video).await?;
        self.ffmpeg.probe(&source.path, &source.name).await
    }

    async fn transcode720p(&self, cx: &StepContext, input: Transcode720pInput<'_>) -> Result<Rendition, StepError> {
        self.rendition(cx, input.upload_video, input.extract_metadata, 720)
            .await
    }

    async fn compensate_transcode720p(
        &self,
        cx: &StepContext,
        _request: &VideoTranscodeRequest,
        data: &Rendition,
    ) -> Result<(), StepError> {
        delete(cx, &data.bucket, &data.key).await
    }

    async fn transcode1080p(&self, cx: &StepContext, input: Transcode1080pInput<'_>) -> Result<Rendition, StepError> {
        self.rendition(cx, input.upload_video, input.extract_metadata, 1080)
            .await
    }

    async fn compensate_transcode1080p(
        &self,
        cx: &StepContext,
        _request: &VideoTranscodeRequest,
        data: &Rendition,
    ) -> Result<(), StepError> {
        delete(cx, &data.bucket, &data.key).await
    }

    async fn transcode4_k(&self, cx: &StepContext, input: Transcode4KInput<'_>) -> Result<Rendition, StepError> {
        self.rendition(cx, input.upload_video, input.extract_metadata, 2160)
            .await
    }

    async fn compensate_transcode4_k(
        &self,
        cx: &StepContext,
        _request: &VideoTranscodeRequest,
        data: &Rendition,
    ) -> Result<(), StepError> {
        delete(cx, &data.bucket, &data.key).await
    }

    async fn generate_thumbnail(
        &self,
        cx: &StepContext,
        input: GenerateThumbnailInput<'_>,
    ) -> Result<Thumbnail, StepError> {
        let source = local_source(cx, input.upload_video).await?;
        let metadata = input.extract_metadata;
        let at = metadata.duration_secs * 0.1;
        let height = even(THUMBNAIL_HEIGHT.min(metadata.height));
        let name = format!("{}-thumbnail.jpg", source.stem());
        let path = output_path(cx, &name).await?;
        self.ffmpeg.thumbnail(cx, &source.path, at, height, &path).await?;
        let written = self
            .ffmpeg
            .probe_image(&path, &name)
            .await
            .map_err(|e| StepError::transient(format!("the thumbnail does not read back: {}", e.message())))?;
        let key = object_key(cx, &name);
        let size = store(cx, &path, &key, "image/jpeg").await?;
        Ok(Thumbnail {
            bucket: TRANSCODED_BUCKET.to_owned(),
            key,
            width: written.0,
            height: written.1,
            size,
            at_secs: at,
        })
    }

    async fn compensate_generate_thumbnail(
        &self,
        cx: &StepContext,
        _request: &VideoTranscodeRequest,
        data: &Thumbnail,
    ) -> Result<(), StepError> {
        delete(cx, &data.bucket, &data.key).await
    }

    async fn notify_webhook(
        &self,
        cx: &StepContext,
        input: NotifyWebhookInput<'_>,
    ) -> Result<super::Notified, StepError> {
        let url = input
            .request
            .notify_url
            .as_deref()
            .ok_or_else(|| StepError::permanent("the request names no notifyUrl"))?;
        let summary = VideoTranscodeResponse {
            source: input.extract_metadata.clone(),
            renditions: made([input.transcode720p, input.transcode1080p, input.transcode4_k]),
            thumbnail: input.generate_thumbnail.clone(),
            notified: None,
        };
        self.notifier.notify(cx, url, &summary).await
    }

    fn response(&self, outputs: Outputs<'_>) -> Result<VideoTranscodeResponse, StepError> {
        Ok(VideoTranscodeResponse {
            source: outputs.extract_metadata.clone(),
            renditions: made([outputs.transcode720p, outputs.transcode1080p, outputs.transcode4_k]),
            thumbnail: outputs.generate_thumbnail.clone(),
            notified: outputs.notify_webhook.cloned(),
        })
    }
}

impl VideoTranscode {
    /// Encodes the source at `height` lines, reads the result back with
    /// `ffprobe`, and stores it.
    async fn rendition(
        &self,
        cx: &StepContext,
        upload: &StoredObjects,
        metadata: &VideoMetadata,
        height: u32,
    ) -> Result<Rendition, StepError> {
        let source = local_source(cx, upload).await?;
        let label = format!("{height}p");
        let name = format!("{}-{label}.mp4", source.stem());
        let path = output_path(cx, &name).await?;
        self.ffmpeg
            .transcode(cx, &source.path, metadata.duration_secs, height, &path)
            .await?;
        // What ffmpeg wrote must read back as a video; if not, try again.
        let written =
            self.ffmpeg.probe(&path, &name).await.map_err(|e| {
                StepError::transient(format!("the {label} rendition does not read back: {}", e.message()))
            })?;
        let key = object_key(cx, &name);
        let size = store(cx, &path, &key, "video/mp4").await?;
        let _ = tokio::fs::remove_file(&path).await;
        Ok(Rendition {
            name: label,
            bucket: TRANSCODED_BUCKET.to_owned(),
            key,
            width: written.width,
            height: written.height,
            size,
            duration_secs: written.duration_secs,
        })
    }
}

/// The renditions made, smallest first (the skipped ones are `None`).
fn made(renditions: [Option<&Rendition>; 3]) -> Vec<Rendition> {
    renditions.into_iter().flatten().cloned().collect()
}

/// The uploaded video on this worker's disk.
struct LocalSource {
    path: PathBuf,
    name: String,
}

impl LocalSource {
    /// The file's name without its extension, for the outputs' names.
    fn stem(&self) -> &str {
        let name = self.name.rsplit('/').next().unwrap_or(&self.name);
        match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem,
            _ => name,
        }
    }
}

/// The uploaded video in the task's scratch directory, fetched from the
/// object store by the first step that needs it on this worker (each step
/// may run on another worker, so none relies on an earlier one's files).
/// Fetched to a file of the step's own, then renamed: steps running
/// together never read a half-written copy.
async fn local_source(cx: &StepContext, upload: &StoredObjects) -> Result<LocalSource, StepError> {
    let object = upload
        .objects
        .first()
        .ok_or_else(|| StepError::permanent("no video file was uploaded"))?;
    let dir = cx.scratch_dir().await?.join("source");
    tokio::fs::create_dir_all(&dir).await?;
    let path = dir.join("video");
    let source = LocalSource {
        path: path.clone(),
        name: safe_file_name(&object.name),
    };
    if tokio::fs::try_exists(&path).await? {
        return Ok(source);
    }
    let partial = dir.join(format!("video.{}.part", cx.step_name()));
    let mut body = cx
        .storage()
        .get(&upload.bucket, &object.key, None)
        .await
        .map_err(|e| StepError::transient(format!("reading {}/{}", upload.bucket, object.key)).with_source(e))?
        .body;
    let mut file = tokio::fs::File::create(&partial).await?;
    while let Some(chunk) = tokio::select! {
        chunk = body.try_next() => chunk?,
        () = cx.cancelled() => return Err(StepError::cancelled()),
    } {
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    tokio::fs::rename(&partial, &path).await?;
    Ok(source)
}

/// Where a step writes its output file `name` before storing it.
async fn output_path(cx: &StepContext, name: &str) -> Result<PathBuf, StepError> {
    let dir = cx.scratch_dir().await?.join(cx.step_name());
    tokio::fs::create_dir_all(&dir).await?;
    Ok(dir.join(name))
}

/// The key of a step's output: the task id first, as the built-in steps'
/// keys, so the reconciler finds it; the step's name next, so a repeated
/// attempt overwrites instead of duplicating.
fn object_key(cx: &StepContext, name: &str) -> String {
    format!("{}/{}/{}", cx.task_id(), cx.step_name(), name.replace('/', "_"))
}

/// Stores the file at `path` under `key` in the renditions' bucket;
/// returns its size.
async fn store(cx: &StepContext, path: &Path, key: &str, content_type: &str) -> Result<u64, StepError> {
    let file = tokio::fs::File::open(path).await?;
    let token = cx.cancellation_token().clone();
    // A cancelled step ends the body with an error, so nothing is published.
    let body = ReaderStream::with_capacity(file, 256 * 1024)
        .map(move |chunk| {
            if token.is_cancelled() {
                Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "step cancelled"))
            } else {
                chunk
            }
        })
        .boxed();
    // Stored is stored, cancelled or not: the step's data then names the
    // object, and compensation deletes it.
    match cx.storage().put(TRANSCODED_BUCKET, key, body).await {
        Ok(meta) => Ok(meta.size),
        Err(_) if cx.is_cancelled() => Err(StepError::cancelled()),
        Err(e) => {
            Err(StepError::transient(format!("storing {TRANSCODED_BUCKET}/{key} ({content_type})")).with_source(e))
        }
    }
}

/// Deletes a stored output (a compensation); deleting what is gone is fine.
async fn delete(cx: &StepContext, bucket: &str, key: &str) -> Result<(), StepError> {
    cx.storage()
        .delete(bucket, key)
        .await
        .map_err(|e| StepError::transient(format!("deleting {bucket}/{key}")).with_source(e))
}

/// `lines` rounded down to an even number (H.264 in 4:2:0 needs it), at
/// least 2.
fn even(lines: u32) -> u32 {
    (lines & !1).max(2)
}
