//! The two worked examples of the design: the ZIP task (upload on the Api
//! host, a custom step with a retry policy and a compensation, a second
//! upload) and a video task (a parallel group with a conditional member).
#![deny(warnings, missing_docs)]

use dtask::prelude::*;
use serde::{Deserialize, Serialize};

/// The request of the ZIP task.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateZipRequest {
    /// The uploaded files.
    #[serde(skip)]
    pub files: Files,
    /// The archive's name.
    pub output_file_name: Option<String>,
}

/// The response of the ZIP task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateZipResponse {
    /// The archive's bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its number of entries.
    pub entries: u32,
}

/// The archive on local disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZipArchive {
    /// The file.
    pub archive: LocalFile,
    /// Its number of entries.
    pub entries: u32,
}

/// Zips uploaded files into one archive.
#[dtask::task(
    name = "CreateZipFromFiles",
    request = CreateZipRequest,
    response = CreateZipResponse,
    queue = "file-processing",
    max_retries = 2,
    timeout_secs = 600,
    mode = InProcess,
    serialization = MessagePack,
    cancellable,
)]
#[file_upload(UploadSourceFiles, order = 1, bucket = "incoming-files", source = request.files)]
#[placement(UploadSourceFiles, host = Api)]
#[custom_step(CreateZipArchive, order = 2, inputs(upload_source_files), output = ZipArchive, timeout_secs = 300)]
#[retry(CreateZipArchive, max_retries = 3, backoff = Exponential, base_delay_ms = 500)]
#[compensation(CreateZipArchive)]
#[file_upload(UploadZip, order = 3, bucket = "processed-files", source = create_zip_archive.archive)]
pub struct CreateZipFromFiles {
    /// Where archives are written.
    pub scratch: std::path::PathBuf,
}

impl create_zip_from_files::Steps for CreateZipFromFiles {
    async fn create_zip_archive(
        &self,
        cx: &StepContext,
        input: create_zip_from_files::CreateZipArchiveInput<'_>,
    ) -> Result<ZipArchive, StepError> {
        cx.report_progress(0.5, Some("zipping".to_owned()));
        let name = input
            .request
            .output_file_name
            .clone()
            .unwrap_or_else(|| "archive.zip".into());
        Ok(ZipArchive {
            archive: LocalFile {
                path: self.scratch.join(&name),
                name,
                content_type: Some("application/zip".into()),
            },
            entries: input.upload_source_files.objects.len() as u32,
        })
    }

    async fn compensate_create_zip_archive(
        &self,
        _cx: &StepContext,
        _request: &CreateZipRequest,
        data: &ZipArchive,
    ) -> Result<(), StepError> {
        std::fs::remove_file(&data.archive.path).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })?;
        Ok(())
    }

    fn response(&self, outputs: create_zip_from_files::Outputs<'_>) -> Result<CreateZipResponse, StepError> {
        let object = outputs
            .upload_zip
            .objects
            .first()
            .ok_or_else(|| StepError::permanent("the archive was not stored"))?;
        Ok(CreateZipResponse {
            bucket: outputs.upload_zip.bucket.clone(),
            key: object.key.clone(),
            size: object.size,
            entries: outputs.create_zip_archive.entries,
        })
    }
}

/// The request of the video task.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct VideoRequest {
    /// The uploaded video.
    #[serde(skip)]
    pub video: Files,
    /// The wanted quality.
    pub quality: Quality,
}

/// A quality setting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quality {
    /// Whatever the source allows.
    #[default]
    Best,
    /// Small files only.
    Small,
}

/// The response of the video task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VideoResponse {
    /// The renditions' keys.
    pub renditions: Vec<String>,
}

/// What ffprobe said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VideoMetadata {
    /// Height in pixels.
    pub height: u32,
    /// Duration in seconds.
    pub seconds: f64,
}

/// One transcoded file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rendition {
    /// The file.
    pub file: LocalFile,
}

const FULL_HD: u32 = 1080;

/// Transcodes a video into three renditions at once.
#[dtask::task(name = "VideoTranscode", request = VideoRequest, response = VideoResponse, queue = "video", timeout_secs = 3600, cancellable = true)]
#[file_upload(UploadVideo, order = 1, bucket = "raw-videos", source = request.video)]
#[placement(UploadVideo, host = Api)]
#[file_download(FetchVideo, order = 2, source = upload_video)]
#[custom_step(ExtractMetadata, order = 3, inputs(fetch_video), output = VideoMetadata)]
#[parallel_group(TranscodeAll, order = 4, await_all = true)]
#[custom_step(Transcode720p, order = 4, group = TranscodeAll, inputs(fetch_video), output = Rendition)]
#[custom_step(Transcode1080p, order = 4, group = TranscodeAll, inputs(fetch_video), output = Rendition)]
#[custom_step(Transcode4K, order = 4, group = TranscodeAll, inputs(fetch_video, extract_metadata), output = Rendition)]
#[condition(Transcode4K, extract_metadata.height > FULL_HD && request.quality == Quality::Best)]
#[retry(Transcode4K, max_retries = 1, backoff = Constant, base_delay_ms = 2000, jitter = Equal, on_exhausted = Fail)]
#[compensation(Transcode720p)]
#[file_upload(UploadRenditions, order = 5, bucket = "renditions", source = transcode720p.file, timeout_secs = 900)]
pub struct VideoTranscode;

impl video_transcode::Steps for VideoTranscode {
    async fn extract_metadata(
        &self,
        _cx: &StepContext,
        input: video_transcode::ExtractMetadataInput<'_>,
    ) -> Result<VideoMetadata, StepError> {
        let _first: Option<&LocalFile> = input.fetch_video.files.first();
        Ok(VideoMetadata {
            height: 2160,
            seconds: 12.5,
        })
    }

    async fn transcode720p(
        &self,
        _cx: &StepContext,
        input: video_transcode::Transcode720pInput<'_>,
    ) -> Result<Rendition, StepError> {
        let file = input
            .fetch_video
            .files
            .first()
            .cloned()
            .ok_or_else(|| StepError::permanent("no video"))?;
        Ok(Rendition { file })
    }

    async fn compensate_transcode720p(
        &self,
        _cx: &StepContext,
        _request: &VideoRequest,
        _data: &Rendition,
    ) -> Result<(), StepError> {
        Ok(())
    }

    async fn transcode1080p(
        &self,
        _cx: &StepContext,
        input: video_transcode::Transcode1080pInput<'_>,
    ) -> Result<Rendition, StepError> {
        let file = input
            .fetch_video
            .files
            .first()
            .cloned()
            .ok_or_else(|| StepError::permanent("no video"))?;
        Ok(Rendition { file })
    }

    async fn transcode4_k(
        &self,
        _cx: &StepContext,
        input: video_transcode::Transcode4KInput<'_>,
    ) -> Result<Rendition, StepError> {
        if input.extract_metadata.seconds <= 0.0 {
            return Err(StepError::permanent("empty video"));
        }
        let file = input
            .fetch_video
            .files
            .first()
            .cloned()
            .ok_or_else(|| StepError::permanent("no video"))?;
        Ok(Rendition { file })
    }

    fn response(&self, outputs: video_transcode::Outputs<'_>) -> Result<VideoResponse, StepError> {
        let mut renditions = vec![
            outputs.transcode720p.file.name.clone(),
            outputs.transcode1080p.file.name.clone(),
        ];
        // Skipped when the source is not above 1080p.
        if let Some(uhd) = outputs.transcode4_k {
            renditions.push(uhd.file.name.clone());
        }
        renditions.extend(outputs.upload_renditions.objects.iter().map(|o| o.key.clone()));
        Ok(VideoResponse { renditions })
    }
}

fn registered<T: Task>() -> &'static dtask::TaskDefinition {
    T::definition()
}

fn main() {
    assert_eq!(registered::<CreateZipFromFiles>().steps.len(), 3);
    assert_eq!(registered::<VideoTranscode>().groups.len(), 1);
}
