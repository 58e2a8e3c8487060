//! How the HTTP API serves the task's archive.

use dtask_http::{FileRef, ProducesFile};

use crate::CreateZipResponse;

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
