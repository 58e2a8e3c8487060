//! How the HTTP API serves what the tasks produce: the archive, and the
//! tallest rendition of a video.

use dtask_http::{FileRef, ProducesFile};

use crate::CreateZipResponse;
use crate::video::VideoTranscodeResponse;

impl ProducesFile for CreateZipResponse {
    fn produced_file(&self) -> Option<FileRef> {
        Some(FileRef {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            file_name: self.file_name.clone(),
            content_type: "application/zip".to_owned(),
        })
    }
}

impl ProducesFile for VideoTranscodeResponse {
    fn produced_file(&self) -> Option<FileRef> {
        let tallest = self.renditions.iter().max_by_key(|r| r.height)?;
        let file_name = tallest.key.rsplit('/').next().unwrap_or(&tallest.key).to_owned();
        Some(FileRef {
            bucket: tallest.bucket.clone(),
            key: tallest.key.clone(),
            file_name,
            content_type: "video/mp4".to_owned(),
        })
    }
}
