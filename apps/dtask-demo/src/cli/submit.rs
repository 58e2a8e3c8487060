//! `submit FILE... [--server URL] [--output OUT.zip]`: the HTTP client.
//! Uploads the files (streamed from disk), follows the task's SSE stream
//! with a progress bar, downloads the archive. Ctrl-C cancels the task and
//! waits until its compensation ends.

use std::path::{Path, PathBuf};

use anyhow::bail;
use dtask::{TaskProgress, TaskStatus};
use dtask_demo::client::{ApiClient, CancelAnswer, Submitted, partial_path};
use dtask_demo::zip_archive::human_bytes;

use super::signals::Interrupts;
use super::{check_readable, view::ProgressView};

/// Runs `submit`.
pub(crate) async fn submit(files: Vec<PathBuf>, server: String, output: PathBuf) -> anyhow::Result<()> {
    let mut total = 0;
    for path in &files {
        total += check_readable(path)?;
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!(
            "cannot write `{}`: `{}` is not a directory",
            output.display(),
            parent.display()
        );
    }
    let client = ApiClient::new(&server)?;
    let mut interrupts = Interrupts::new()?;
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned());
    eprintln!(
        "Uploading {} file{} ({}) to {}…",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        human_bytes(total),
        client.server()
    );
    let submitted = tokio::select! {
        submitted = client.submit_zip(&files, name.as_deref()) => submitted?,
        () = interrupts.recv() => bail!("cancelled: the upload was interrupted"),
    };
    eprintln!("Task {} accepted ({}).", submitted.task_id, submitted.status);
    let (last, cancelled) = follow(&client, &submitted, &mut interrupts).await?;
    check_outcome(&submitted, &last, cancelled)?;
    let size = tokio::select! {
        size = client.download(&submitted.links.download, &output) => size?,
        () = interrupts.recv() => {
            let _ = tokio::fs::remove_file(partial_path(&output)).await;
            bail!("cancelled: the download was interrupted");
        }
    };
    match count_entries(&output) {
        Some(entries) => println!("{}: {entries} files, {}", output.display(), human_bytes(size)),
        None => println!("{}: {}", output.display(), human_bytes(size)),
    }
    Ok(())
}

/// Follows the stream to the terminal snapshot. The first Ctrl-C asks the
/// server to cancel and keeps following (compensation runs); a second one
/// stops waiting.
pub(super) async fn follow(
    client: &ApiClient,
    submitted: &Submitted,
    interrupts: &mut Interrupts,
) -> anyhow::Result<(TaskProgress, bool)> {
    let mut view = ProgressView::new();
    let mut follower = client.follow(&submitted.links.stream);
    let mut cancelled = false;
    let outcome = loop {
        tokio::select! {
            next = follower.next() => match next {
                Ok(Some(progress)) => view.show(&progress),
                Ok(None) => break Ok(()),
                Err(error) => break Err(error.into()),
            },
            () = interrupts.recv() => {
                if cancelled {
                    break Err(anyhow::anyhow!(
                        "interrupted: task {} may still be compensating on the server",
                        submitted.task_id
                    ));
                }
                cancelled = true;
                view.println("Cancelling (Ctrl-C again to stop waiting)…");
                match client.cancel(&submitted.links.cancel).await {
                    Ok(CancelAnswer::Requested) => view.println("Cancellation requested; waiting for compensation to end…"),
                    Ok(CancelAnswer::Refused(why)) => view.println(&format!("The server refused to cancel: {why}")),
                    Err(error) => view.println(&format!("Cannot cancel: {error}")),
                }
            }
        }
    };
    view.finish();
    outcome?;
    match follower.last() {
        Some(last) => Ok((last.clone(), cancelled)),
        None => bail!("the progress stream ended without a snapshot"),
    }
}

pub(super) fn check_outcome(submitted: &Submitted, last: &TaskProgress, cancelled: bool) -> anyhow::Result<()> {
    let error = last.error.as_deref().unwrap_or("no error recorded");
    match last.status {
        TaskStatus::Completed if !cancelled => Ok(()),
        TaskStatus::Completed => {
            bail!("cancelled: the task completed before the cancellation reached it; nothing was downloaded")
        }
        TaskStatus::Cancelled => bail!(
            "cancelled: task {} was cancelled and its completed steps were undone",
            submitted.task_id
        ),
        TaskStatus::Compensated => bail!("the task failed (its completed steps were undone): {error}"),
        TaskStatus::CompensationFailed => {
            bail!("the task failed and undoing its steps failed too (objects may remain): {error}")
        }
        status => bail!("the task {}: {error}", status.as_str()),
    }
}

/// The number of entries of the downloaded archive, read from its central
/// directory.
fn count_entries(path: &Path) -> Option<usize> {
    let file = std::fs::File::open(path).ok()?;
    zip::ZipArchive::new(file).ok().map(|archive| archive.len())
}
