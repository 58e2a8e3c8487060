//! The demo's commands.

mod api;
pub(crate) mod auth;
pub(crate) mod deploy;
pub(crate) mod reconcile;
mod serve;
mod signals;
mod submit;
mod video;
mod view;
mod worker;

pub(crate) use reconcile::reconcile;
pub(crate) use serve::{ServeArgs, serve};
pub(crate) use submit::submit;
pub(crate) use video::{submit_video, video};
pub(crate) use worker::worker;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use dtask::fs::LocalFileSystemStore;
use dtask::prelude::*;
use dtask::{Host, TaskOutcome};
use dtask_demo::zip_archive::human_bytes;
use dtask_demo::{CreateZipFromFiles, CreateZipRequest};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// `zip FILE... --output OUT.zip [--in-memory]`.
///
/// The task runs in InProcess mode. Unless `in_memory`, its object store is
/// a [`LocalFileSystemStore`] in a temporary directory, so memory use does
/// not grow with the size of the files.
pub(crate) async fn zip(files: Vec<PathBuf>, output: PathBuf, in_memory: bool) -> anyhow::Result<()> {
    for path in &files {
        check_readable(path)?;
    }
    let request = CreateZipRequest {
        files: Files::from_paths(files).context("reading the input files")?,
        output_file_name: output.file_name().map(|n| n.to_string_lossy().into_owned()),
    };
    let store_dir = std::env::temp_dir().join(format!("dtask-zip-{}", std::process::id()));
    let mut builder = Host::builder().register(CreateZipFromFiles);
    if !in_memory {
        builder = builder.storage(LocalFileSystemStore::new(&store_dir)?);
    }
    let host = builder.build()?;
    let result = async {
        let outcome = run_with_progress::<CreateZipFromFiles>(&host, request).await?;
        let response = outcome.into_response()?;
        copy_out(&host, &response.bucket, &response.key, &output).await?;
        anyhow::Ok(response)
    }
    .await;
    host.shutdown().await;
    let _ = tokio::fs::remove_dir_all(&store_dir).await;
    let response = result?;
    println!(
        "{}: {} files, {}",
        output.display(),
        response.entries,
        human_bytes(response.size)
    );
    Ok(())
}

/// The default command: zips generated sample files and lists the archive.
pub(crate) async fn demo() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("dtask-demo-{}", std::process::id()));
    tokio::fs::create_dir_all(&dir).await?;
    let samples = [
        ("README.txt", b"dtask zipped these files in InProcess mode.\n".to_vec()),
        ("report.csv", b"id,name,value\n1,alpha,3.14\n2,beta,2.72\n".repeat(2000)),
        (
            "noise.bin",
            (0..4_000_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
        ),
        ("résumé ✓.txt", "non-ASCII names survive\n".as_bytes().to_vec()),
    ];
    let mut paths = Vec::new();
    for (name, bytes) in &samples {
        let path = dir.join(name);
        tokio::fs::write(&path, bytes).await?;
        paths.push(path);
    }
    let output = dir.join("dtask-demo.zip");
    println!(
        "Zipping {} sample files with CreateZipFromFiles (InProcess mode)…",
        paths.len()
    );
    zip(paths, output.clone(), false).await?;
    let archive = zip::ZipArchive::new(std::fs::File::open(&output)?)?;
    println!("Archive contents:");
    for name in archive.file_names() {
        println!("  {}", name?);
    }
    println!("\nNext: cargo run --release (the server and its dashboard), or -- zip FILE... --output OUT.zip");
    Ok(())
}

/// Checks that `path` is a readable regular file; returns its size.
fn check_readable(path: &Path) -> anyhow::Result<u64> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if !meta.is_file() {
        bail!("`{}` is not a regular file", path.display());
    }
    std::fs::File::open(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    Ok(meta.len())
}

/// Runs a `T` in `host` with a live progress view; the outcome of a task
/// that completed, an error for one that did not.
async fn run_with_progress<T: Task>(host: &Host, request: T::Request) -> anyhow::Result<TaskOutcome<T::Response>> {
    let task_id = TaskId::new();
    let mut events = host.events();
    let watcher = {
        let host = host.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if event.task_id == task_id {
                    break;
                }
            }
            let mut view = view::ProgressView::new();
            if let Ok(mut stream) = host.stream(task_id).await {
                while let Some(progress) = stream.next().await {
                    view.show(&progress);
                }
            }
            view.finish();
        })
    };
    let submitted = host.submit_with_id::<T>(task_id, request).await;
    let outcome = match submitted {
        Ok(handle) => handle.wait().await,
        Err(error) => Err(error),
    };
    let _ = watcher.await;
    let outcome = outcome?;
    if outcome.status() != TaskStatus::Completed {
        bail!(
            "the task ended {}: {}",
            outcome.status().as_str(),
            outcome.progress.error.as_deref().unwrap_or("no error recorded")
        );
    }
    Ok(outcome)
}

/// Streams object `bucket`/`key` from the host's store to `output`
/// (through a temporary file, so a failed copy leaves no half-written
/// file).
async fn copy_out(host: &Host, bucket: &str, key: &str, output: &Path) -> anyhow::Result<()> {
    let storage = &host.infrastructure().storage;
    let mut body = storage.get(bucket, key, None).await?.body;
    let partial = dtask_demo::client::partial_path(output);
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot write `{}`", partial.display()))?;
    while let Some(chunk) = body.next().await {
        file.write_all(&chunk?).await?;
    }
    file.sync_all().await?;
    tokio::fs::rename(&partial, output)
        .await
        .with_context(|| format!("cannot write `{}`", output.display()))?;
    Ok(())
}

/// `hash-api-key [KEY]`: the line's hash for the API keys file.
pub(crate) fn hash_api_key(key: Option<String>) -> anyhow::Result<()> {
    let key = match key {
        Some(key) => key,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the key")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if key.is_empty() {
        bail!("the key is empty");
    }
    println!("{}", dtask_http::ApiKeys::hash(&key));
    Ok(())
}
