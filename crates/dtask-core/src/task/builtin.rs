//! The built-in steps: file upload and file download, with their
//! compensations. Generated code reaches them through `__private`.

use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::{StepContext, StepError};
use crate::files::{
    DownloadedFiles, LocalFile, StoredObject, StoredObjects, UniqueNames, UploadSource, safe_file_name,
};
use crate::infra::ByteStream;

/// The object key of the `index`-th file of an upload step: deterministic,
/// so a repeated attempt overwrites instead of duplicating, and prefixed by
/// the task id, so a task's objects can be listed and reconciled.
pub fn upload_key(cx: &StepContext, index: usize, safe_name: &str) -> String {
    format!(
        "{}/{}/{index:04}-{}",
        cx.task_id(),
        cx.step_name(),
        safe_name.replace('/', "_")
    )
}

/// Stores every file of `source` into `bucket`. On failure, deletes what
/// this attempt stored, so a failed attempt leaves nothing behind.
pub async fn upload(
    cx: &StepContext,
    bucket: &'static str,
    source: &(impl UploadSource + ?Sized),
) -> Result<StoredObjects, StepError> {
    let mut stored = StoredObjects {
        bucket: bucket.to_owned(),
        objects: Vec::new(),
    };
    let result = upload_all(cx, bucket, source, &mut stored).await;
    match result {
        Ok(()) => Ok(stored),
        Err(error) => {
            for object in &stored.objects {
                if let Err(e) = cx.storage().delete(bucket, &object.key).await {
                    tracing::warn!(key = %object.key, error = %e, "could not delete a partial upload");
                }
            }
            // A one-shot source (a request's streamed uploads) cannot be read again.
            Err(if source.is_replayable() {
                error
            } else {
                error.into_permanent()
            })
        }
    }
}

async fn upload_all(
    cx: &StepContext,
    bucket: &'static str,
    source: &(impl UploadSource + ?Sized),
    stored: &mut StoredObjects,
) -> Result<(), StepError> {
    let total = source.total_size();
    let mut files = source.open();
    let mut names = UniqueNames::default();
    let mut done = 0u64;
    while let Some(file) = files.next().await {
        let file = file?;
        let name = names.claim(&safe_file_name(&file.name));
        let key = upload_key(cx, stored.objects.len(), &name);
        let body = guard_stream(cx, file.body);
        let meta = tokio::select! {
            meta = cx.storage().put(bucket, &key, body) => meta,
            () = cx.cancelled() => return Err(StepError::cancelled()),
        };
        let meta = meta.map_err(|e| StepError::transient(format!("storing `{name}`")).with_source(e))?;
        done += meta.size;
        stored.objects.push(StoredObject {
            key,
            name,
            size: meta.size,
            content_type: file.content_type,
        });
        let fraction = total.map_or(0.0, |t| if t == 0 { 1.0 } else { done as f64 / t as f64 });
        cx.report_progress(fraction, format!("{} files, {done} bytes stored", stored.objects.len()));
    }
    Ok(())
}

/// Ends a body stream with an error as soon as the step is cancelled, so a
/// backend stops writing (and publishes nothing).
fn guard_stream(cx: &StepContext, body: ByteStream) -> ByteStream {
    let token = cx.cancellation_token().clone();
    body.map(move |chunk| {
        if token.is_cancelled() {
            Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "step cancelled"))
        } else {
            chunk
        }
    })
    .boxed()
}

/// Deletes the objects an upload step stored.
pub async fn compensate_upload(cx: &StepContext, data: Option<&StoredObjects>) -> Result<(), StepError> {
    let Some(data) = data else { return Ok(()) };
    for object in &data.objects {
        cx.storage()
            .delete(&data.bucket, &object.key)
            .await
            .map_err(|e| StepError::transient(format!("deleting {}/{}", data.bucket, object.key)).with_source(e))?;
    }
    Ok(())
}

/// Fetches every object of `source` into the task's scratch directory.
pub async fn download(cx: &StepContext, source: &StoredObjects) -> Result<DownloadedFiles, StepError> {
    let dir = cx.scratch_dir().await?.join(cx.step_name());
    tokio::fs::create_dir_all(&dir).await?;
    let total = source.total_size();
    let mut done = 0u64;
    let mut files = Vec::with_capacity(source.objects.len());
    for (index, object) in source.objects.iter().enumerate() {
        let path = dir.join(format!("{index:04}-{}", object.name.replace('/', "_")));
        let mut body = cx
            .storage()
            .get(&source.bucket, &object.key, None)
            .await
            .map_err(|e| StepError::transient(format!("reading {}/{}", source.bucket, object.key)).with_source(e))?
            .body;
        let mut file = tokio::fs::File::create(&path).await?;
        while let Some(chunk) = tokio::select! {
            chunk = body.try_next() => chunk?,
            () = cx.cancelled() => return Err(StepError::cancelled()),
        } {
            file.write_all(&chunk).await?;
            done += chunk.len() as u64;
            let fraction = if total == 0 { 1.0 } else { done as f64 / total as f64 };
            cx.report_progress(fraction, format!("{done} of {total} bytes fetched"));
        }
        file.flush().await?;
        files.push(LocalFile {
            path,
            name: object.name.clone(),
            content_type: object.content_type.clone(),
        });
    }
    Ok(DownloadedFiles { files })
}

/// Deletes the files a download step fetched.
pub async fn compensate_download(data: Option<&DownloadedFiles>) -> Result<(), StepError> {
    for file in data.map(|d| d.files.as_slice()).unwrap_or_default() {
        match tokio::fs::remove_file(&file.path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// The data of step `name`, which an input, a source or the response needs
/// but which is missing: the producing step was skipped or has not run.
///
/// # Errors
/// A permanent [`StepError`] naming the step when `data` is `None`.
pub fn required<'a, T>(data: Option<&'a T>, name: &'static str) -> Result<&'a T, StepError> {
    data.ok_or_else(|| StepError::permanent(format!("the data of step `{name}` is missing (skipped or not run)")))
}

/// Reads a step's saved data, which is there: `Some` of whatever it holds.
/// (`Option`'s own deserializer reads `null` as `None`, and a step whose
/// output is `()` or `None` saves `null`: it would read back as never run,
/// and a resumed run would neither compensate it nor find its output.)
/// Absent data is `None` through the field's `#[serde(default)]`.
///
/// # Errors
/// The deserializer's, when the data is not a `T`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Records one value a condition read.
pub fn observe<T: std::fmt::Debug + ?Sized>(path: &'static str, value: &T) -> super::ObservedValue {
    super::ObservedValue {
        path: path.to_owned(),
        value: format!("{value:?}"),
    }
}

/// The evaluation of a condition that could not run because a step it
/// reads was skipped: it does not hold.
pub fn condition_missing(expression: &'static str, step: &'static str) -> super::ConditionSnapshot {
    super::ConditionSnapshot {
        expression: expression.to_owned(),
        observed: vec![super::ObservedValue {
            path: step.to_owned(),
            value: "<skipped>".to_owned(),
        }],
        holds: false,
    }
}

/// The error for a step index the task does not have.
pub fn unknown_step(step: usize) -> StepError {
    StepError::permanent(format!("no step with index {step}"))
}

/// Puts `files` into a request's file field.
///
/// # Errors
/// Never; the signature matches `Task::attach_files`.
pub fn attach_files(slot: &mut crate::Files, files: crate::Files) -> Result<(), crate::Files> {
    *slot = files;
    Ok(())
}

/// The longest of `depths` (0 for none): a task's chain depth is one more
/// than its upstreams' longest. A `const fn`, so a cycle of
/// `#[depends_on]` edges fails to compile.
pub const fn max_depth(depths: &[usize]) -> usize {
    let mut longest = 0;
    let mut index = 0;
    while index < depths.len() {
        if depths[index] > longest {
            longest = depths[index];
        }
        index += 1;
    }
    longest
}
