//! The worked example of dtask: **CreateZipFromFiles**, the design's first
//! task. A client uploads files; the API stores them in `incoming-files`;
//! a worker streams them into a deflated ZIP archive and stores it in
//! `processed-files`; the client gets the archive's location.
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
pub mod server;
pub mod zip_archive;

pub use create_zip::{CreateZipFromFiles, CreateZipRequest, CreateZipResponse, ZipArchive};
