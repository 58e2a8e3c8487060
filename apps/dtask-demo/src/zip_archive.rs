//! Streaming stored objects into a deflated ZIP archive on local disk.
//!
//! Each object is read from the object store as a stream and fed to the
//! `zip` crate's writer on a blocking thread, so neither the inputs nor the
//! archive are ever held whole in memory. Entry names are the stored names
//! (already made safe and unique by the upload step) and are checked again
//! here, so nothing can escape the archive root.

use std::io::{self, Read, Write};
use std::path::Path;

use dtask::files::{UniqueNames, safe_file_name};
use dtask::prelude::*;
use tokio_util::io::{StreamReader, SyncIoBridge};
use tokio_util::sync::CancellationToken;
use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

use crate::create_zip::ZipArchive;

/// Zips every object of `sources` into `<scratch>/<name>`, reporting the
/// bytes zipped so far as the step's progress.
///
/// # Errors
/// A transient error for I/O failures (the step retries), cancellation when
/// the step's token fires.
pub async fn write(cx: &StepContext, sources: &StoredObjects, name: &str) -> Result<ZipArchive, StepError> {
    let path = cx.scratch_dir().await?.join(name);
    let total = sources.total_size();
    let mut readers = Vec::with_capacity(sources.objects.len());
    let mut names = UniqueNames::default();
    for object in &sources.objects {
        let body = cx
            .storage()
            .get(&sources.bucket, &object.key, None)
            .await
            .map_err(|e| StepError::transient(format!("reading `{}`", object.name)).with_source(e))?
            .body;
        let reader = SyncIoBridge::new(StreamReader::new(body));
        readers.push((names.claim(&safe_file_name(&object.name)), object.size, reader));
    }
    let progress = Progress {
        cx: cx.clone(),
        total,
        done: 0,
        reported: 0,
    };
    let token = cx.cancellation_token().clone();
    let target = path.clone();
    let entries = tokio::task::spawn_blocking(move || zip_blocking(&target, readers, progress, &token))
        .await
        .map_err(|e| StepError::transient("the zip writer thread failed").with_source(e))?;
    match entries {
        Ok(entries) => Ok(ZipArchive {
            archive: LocalFile {
                path,
                name: name.to_owned(),
                content_type: Some("application/zip".to_owned()),
            },
            entries,
            input_bytes: total,
        }),
        Err(error) => {
            let _ = tokio::fs::remove_file(&path).await;
            if cx.is_cancelled() {
                Err(StepError::cancelled())
            } else {
                Err(StepError::transient("writing the archive").with_source(error))
            }
        }
    }
}

fn zip_blocking<R: Read>(
    path: &Path,
    readers: Vec<(String, u64, R)>,
    mut progress: Progress,
    token: &CancellationToken,
) -> io::Result<u32> {
    let file = std::fs::File::create(path)?;
    let mut zip = ZipWriter::new(io::BufWriter::with_capacity(256 * 1024, file));
    let mut entries = 0;
    for (name, size, reader) in readers {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .large_file(size >= u64::from(u32::MAX))
            .unix_permissions(0o644);
        zip.start_file(name, options).map_err(io::Error::other)?;
        let mut reader = Cancellable { inner: reader, token };
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            zip.write_all(&buffer[..read])?;
            progress.advance(read as u64);
        }
        entries += 1;
    }
    let mut file = zip.finish().map_err(io::Error::other)?;
    file.flush()?;
    file.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()?;
    Ok(entries)
}

/// Reports the bytes zipped so far, at most once per MiB.
struct Progress {
    cx: StepContext,
    total: u64,
    done: u64,
    reported: u64,
}

impl Progress {
    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.done - self.reported >= 1 << 20 || self.done == self.total {
            self.reported = self.done;
            let fraction = if self.total == 0 {
                1.0
            } else {
                self.done as f64 / self.total as f64
            };
            self.cx.report_progress(
                fraction,
                format!("{} of {} zipped", human_bytes(self.done), human_bytes(self.total)),
            );
        }
    }
}

/// A reader that fails once the step's token fires.
struct Cancellable<'t, R> {
    inner: R,
    token: &'t CancellationToken,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.token.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}

/// `1.5 MiB`, `320 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
