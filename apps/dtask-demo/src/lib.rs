//! The worked example of dtask: **CreateZipFromFiles**, the design's first
//! task. A client uploads files; the API stores them in `incoming-files`;
//! a worker streams them into a deflated ZIP archive and stores it in
//! `processed-files`; the client gets the archive's location.
//!
//! The crate also holds the demo binary (`cargo run --release`), which runs
//! the task in InProcess mode on sample files or on files you name
//! (`cargo run --release -- zip FILE... --output OUT.zip`).

pub mod create_zip;
pub mod zip_archive;

pub use create_zip::{CreateZipFromFiles, CreateZipRequest, CreateZipResponse, ZipArchive};
