//! The worked examples of dtask. **CreateZipFromFiles**, the design's first
//! task: a client uploads files; the API stores them in `incoming-files`;
//! a worker streams them into a deflated ZIP archive and stores it in
//! `processed-files`; the client gets the archive's location.
//! **VideoTranscode** ([video]), the second: an uploaded video probed with
//! `ffprobe` and encoded by `ffmpeg` into the renditions its height allows,
//! in a parallel group, with a thumbnail and an optional notification.
//!
//! The crate also holds the demo binary. `cargo run --release` starts the
//! [server] (the dtask HTTP API for the task plus the live [dashboard] at
//! `http://127.0.0.1:8080/`); `cargo run --release -- submit FILE...` is
//! its terminal [client]; `zip FILE...` and `demo` run the task in the
//! command's own process.

pub mod client;
pub mod create_zip;
pub mod dashboard;
mod http;
pub mod orders;
pub mod server;
pub mod video;
pub mod zip_archive;

pub use create_zip::{CreateZipFromFiles, CreateZipRequest, CreateZipResponse, ZipArchive};
pub use video::{VideoTranscode, VideoTranscodeRequest, VideoTranscodeResponse};

/// Every bucket the demo's tasks write: their upload steps' buckets and
/// the renditions' bucket, which VideoTranscode's custom steps write.
pub fn buckets() -> Vec<&'static str> {
    use dtask::Task;
    let mut buckets = CreateZipFromFiles::definition().buckets();
    for bucket in VideoTranscode::definition()
        .buckets()
        .into_iter()
        .chain([video::TRANSCODED_BUCKET])
    {
        if !buckets.contains(&bucket) {
            buckets.push(bucket);
        }
    }
    buckets
}
