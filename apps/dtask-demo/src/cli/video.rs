//! `video FILE --output DIR` (VideoTranscode in this process) and
//! `submit-video FILE --output DIR` (through a running server).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use dtask::fs::LocalFileSystemStore;
use dtask::prelude::*;
use dtask::{Host, StepStatus, TaskOutcome};
use dtask_demo::client::ApiClient;
use dtask_demo::video::{VideoTranscode, VideoTranscodeRequest, VideoTranscodeResponse};
use dtask_demo::zip_archive::human_bytes;

use super::signals::Interrupts;
use super::submit::{check_outcome, follow};
use super::{check_readable, copy_out, run_with_progress};

/// `video FILE --output DIR`: transcodes in this process, with live
/// progress, and writes every rendition and the thumbnail into `DIR`.
pub(crate) async fn video(file: PathBuf, output: PathBuf) -> anyhow::Result<()> {
    check_readable(&file)?;
    tokio::fs::create_dir_all(&output)
        .await
        .with_context(|| format!("cannot create `{}`", output.display()))?;
    let task = VideoTranscode::from_env()?;
    task.ffmpeg().check().await?;
    let store_dir = std::env::temp_dir().join(format!("dtask-video-{}", std::process::id()));
    let host = Host::builder()
        .register(task)
        .in_process()
        .storage(LocalFileSystemStore::new(&store_dir)?)
        .scratch_root(store_dir.join("scratch"))
        .build()?;
    let request = VideoTranscodeRequest {
        video_file: Files::from_paths([file]).context("reading the video")?,
        notify_url: None,
    };
    let result = async {
        let outcome: TaskOutcome<VideoTranscodeResponse> = run_with_progress::<VideoTranscode>(&host, request).await?;
        let skipped = skipped_renditions(&outcome.progress);
        let response = outcome.into_response()?;
        for rendition in &response.renditions {
            let path = output.join(file_name(&rendition.key));
            copy_out(&host, &rendition.bucket, &rendition.key, &path).await?;
            println!(
                "{}: {}x{}, {:.1} s, {}",
                path.display(),
                rendition.width,
                rendition.height,
                rendition.duration_secs,
                human_bytes(rendition.size)
            );
        }
        let thumbnail = &response.thumbnail;
        let path = output.join(file_name(&thumbnail.key));
        copy_out(&host, &thumbnail.bucket, &thumbnail.key, &path).await?;
        println!(
            "{}: {}x{} thumbnail at {:.1} s",
            path.display(),
            thumbnail.width,
            thumbnail.height,
            thumbnail.at_secs
        );
        for step in skipped {
            println!("{step}: skipped (the source is {} lines tall)", response.source.height);
        }
        anyhow::Ok(())
    }
    .await;
    host.shutdown().await;
    let _ = tokio::fs::remove_dir_all(&store_dir).await;
    result
}

/// `submit-video FILE [--server URL] [--output DIR] [--notify-url URL]`:
/// uploads the video, follows the task, downloads the tallest rendition.
/// Ctrl-C cancels the task.
pub(crate) async fn submit_video(
    file: PathBuf,
    server: String,
    output: PathBuf,
    notify_url: Option<String>,
) -> anyhow::Result<()> {
    let size = check_readable(&file)?;
    if !output.is_dir() {
        bail!("`{}` is not a directory", output.display());
    }
    let client = ApiClient::new(&server)?;
    let mut interrupts = Interrupts::new()?;
    eprintln!(
        "Uploading {} ({}) to {}…",
        file.display(),
        human_bytes(size),
        client.server()
    );
    let submitted = tokio::select! {
        submitted = client.submit_video(&file, notify_url.as_deref()) => submitted?,
        () = interrupts.recv() => bail!("cancelled: the upload was interrupted"),
    };
    eprintln!("Task {} accepted ({}).", submitted.task_id, submitted.status);
    let (last, cancelled) = follow(&client, &submitted, &mut interrupts).await?;
    check_outcome(&submitted, &last, cancelled)?;
    let response: VideoTranscodeResponse = client.result(&submitted.links.result).await?;
    for rendition in &response.renditions {
        println!(
            "{}: {}x{}, {:.1} s, {} in {}/{}",
            rendition.name,
            rendition.width,
            rendition.height,
            rendition.duration_secs,
            human_bytes(rendition.size),
            rendition.bucket,
            rendition.key
        );
    }
    if let Some(tallest) = response.renditions.iter().max_by_key(|r| r.height) {
        let path = output.join(file_name(&tallest.key));
        let size = tokio::select! {
            size = client.download(&submitted.links.download, &path) => size?,
            () = interrupts.recv() => bail!("cancelled: the download was interrupted"),
        };
        println!("{}: {}", path.display(), human_bytes(size));
    }
    for step in skipped_renditions(&last) {
        println!("{step}: skipped (the source is {} lines tall)", response.source.height);
    }
    Ok(())
}

/// The transcode steps a task skipped.
fn skipped_renditions(progress: &TaskProgress) -> Vec<String> {
    progress
        .steps
        .iter()
        .filter(|s| s.name.starts_with("Transcode") && s.status == StepStatus::Skipped)
        .map(|s| s.name.to_string())
        .collect()
}

/// The last segment of an object key.
fn file_name(key: &str) -> &Path {
    Path::new(key.rsplit('/').next().unwrap_or(key))
}
