//! [`PutStats`]: how the puts of one store went, for tests and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of the puts of one [`S3ObjectStore`](crate::S3ObjectStore) since
/// it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutStats {
    /// Puts written with one `PUT` (bodies of at most one part).
    pub single_puts: u64,
    /// Multipart uploads started.
    pub multipart_uploads: u64,
    /// Multipart uploads completed.
    pub multipart_completed: u64,
    /// Parts uploaded successfully.
    pub parts_uploaded: u64,
    /// Multipart uploads aborted (a failed body, a failed part, or a put
    /// dropped before it ended).
    pub multipart_aborted: u64,
}

/// The live counters behind [`PutStats`].
#[derive(Debug, Default)]
pub(crate) struct PutStatsCounters {
    single_puts: AtomicU64,
    multipart_uploads: AtomicU64,
    multipart_completed: AtomicU64,
    parts_uploaded: AtomicU64,
    multipart_aborted: AtomicU64,
}

/// One of the counters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PutEvent {
    SinglePut,
    MultipartStarted,
    MultipartCompleted,
    PartUploaded,
    MultipartAborted,
}

impl PutStatsCounters {
    pub(crate) fn record(&self, event: PutEvent) {
        let counter = match event {
            PutEvent::SinglePut => &self.single_puts,
            PutEvent::MultipartStarted => &self.multipart_uploads,
            PutEvent::MultipartCompleted => &self.multipart_completed,
            PutEvent::PartUploaded => &self.parts_uploaded,
            PutEvent::MultipartAborted => &self.multipart_aborted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> PutStats {
        PutStats {
            single_puts: self.single_puts.load(Ordering::Relaxed),
            multipart_uploads: self.multipart_uploads.load(Ordering::Relaxed),
            multipart_completed: self.multipart_completed.load(Ordering::Relaxed),
            parts_uploaded: self.parts_uploaded.load(Ordering::Relaxed),
            multipart_aborted: self.multipart_aborted.load(Ordering::Relaxed),
        }
    }
}
