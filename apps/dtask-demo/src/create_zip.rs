//! The CreateZipFromFiles task, declared with the DSL.
//!
//! | order | step | kind | host | notes |
//! |---|---|---|---|---|
//! | 1 | UploadSourceFiles | file upload | Api | request `files` into `incoming-files` |
//! | 2 | CreateZipArchive | custom | Worker | 3 retries, exponential from 500 ms; undo deletes the archive |
//! | 3 | UploadZip | file upload | Worker | the archive into `processed-files` |
//!
//! A failure after the upload deletes the uploaded sources (the upload
//! steps compensate themselves); a cancellation after the archive exists
//! deletes it too.

use dtask::prelude::*;
use serde::{Deserialize, Serialize};

use crate::zip_archive;

/// The input: the files to zip and the archive's name.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateZipRequest {
    /// The uploaded files (consumed by UploadSourceFiles on the API side).
    #[serde(skip)]
    pub files: Files,
    /// The archive's file name (default `archive.zip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_name: Option<String>,
}

/// The output: where the archive is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateZipResponse {
    /// The bucket holding the archive.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// Its file name.
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
    /// How many files it holds.
    pub entries: u32,
}

/// The data of CreateZipArchive: the archive on the worker's disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipArchive {
    /// The archive file.
    pub archive: LocalFile,
    /// How many entries it holds.
    pub entries: u32,
    /// The total size of the zipped files, uncompressed.
    pub input_bytes: u64,
}

/// Zips uploaded files. Stateless: the steps get everything from their
/// input and context.
#[dtask::task(
    name = "CreateZipFromFiles",
    request = CreateZipRequest,
    response = CreateZipResponse,
    queue = "file-processing",
    max_retries = 2,
    timeout_secs = 600,
    mode = InProcess,
    serialization = Json,
    cancellable
)]
#[file_upload(UploadSourceFiles, order = 1, bucket = "incoming-files", source = request.files)]
#[placement(UploadSourceFiles, host = Api)]
#[custom_step(CreateZipArchive, order = 2, inputs(upload_source_files), output = ZipArchive)]
#[retry(CreateZipArchive, max_retries = 3, backoff = Exponential, base_delay_ms = 500)]
#[compensation(CreateZipArchive)]
#[file_upload(UploadZip, order = 3, bucket = "processed-files", source = create_zip_archive.archive)]
#[derive(Debug, Default, Clone, Copy)]
pub struct CreateZipFromFiles;

impl create_zip_from_files::Steps for CreateZipFromFiles {
    async fn create_zip_archive(
        &self,
        cx: &StepContext,
        input: create_zip_from_files::CreateZipArchiveInput<'_>,
    ) -> Result<ZipArchive, StepError> {
        let name = archive_name(input.request.output_file_name.as_deref());
        zip_archive::write(cx, input.upload_source_files, &name).await
    }

    async fn compensate_create_zip_archive(
        &self,
        _cx: &StepContext,
        _request: &CreateZipRequest,
        data: &ZipArchive,
    ) -> Result<(), StepError> {
        match tokio::fs::remove_file(&data.archive.path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn response(&self, outputs: create_zip_from_files::Outputs<'_>) -> Result<CreateZipResponse, StepError> {
        let stored = outputs
            .upload_zip
            .objects
            .first()
            .ok_or_else(|| StepError::permanent("UploadZip stored no archive"))?;
        Ok(CreateZipResponse {
            bucket: outputs.upload_zip.bucket.clone(),
            key: stored.key.clone(),
            file_name: stored.name.clone(),
            size: stored.size,
            entries: outputs.create_zip_archive.entries,
        })
    }
}

/// The archive's file name: the requested one made safe (its last path
/// segment, with a `.zip` extension), or `archive.zip`.
pub fn archive_name(requested: Option<&str>) -> String {
    let safe = dtask::files::safe_file_name(requested.unwrap_or("archive.zip"));
    let last = safe.rsplit('/').next().unwrap_or("archive");
    if last.to_ascii_lowercase().ends_with(".zip") {
        last.to_owned()
    } else {
        format!("{last}.zip")
    }
}

#[cfg(test)]
mod tests {
    use super::archive_name;

    #[test]
    fn archive_names_are_safe_and_end_in_zip() {
        assert_eq!(archive_name(None), "archive.zip");
        assert_eq!(archive_name(Some("photos")), "photos.zip");
        assert_eq!(archive_name(Some("../../x/Photos.ZIP")), "Photos.ZIP");
        assert_eq!(archive_name(Some("..")), "file.zip");
    }
}
