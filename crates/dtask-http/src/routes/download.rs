//! `GET /api/tasks/{id}/download`: the file a completed task produced,
//! streamed from the object store, with single byte ranges.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, IF_RANGE, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::range::{self, RangeRequest};
use super::result::require_completed;
use super::{endpoint_of, progress, task_id};
use crate::caller::RequestCaller;
use crate::extract::Path;
use crate::problem::{ApiResult, Problem, kinds};
use crate::state::Shared;

/// Streams the produced file.
pub(crate) async fn download(
    State(state): State<Shared>,
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let task_id = task_id(&id)?;
    let progress = progress(&caller, task_id).await?;
    let endpoint = endpoint_of(&state, &progress)?;
    if !endpoint.downloadable {
        return Err(kinds::not_downloadable(format!(
            "{} produces no downloadable file",
            progress.task_name
        )));
    }
    require_completed(&progress)?;
    let file = endpoint
        .produced_file(&caller, task_id)
        .await?
        .ok_or_else(|| kinds::not_downloadable(format!("task {task_id} produced no file")))?;
    let storage = &state.host.infrastructure().storage;
    let meta = storage.head(&file.bucket, &file.key).await.map_err(|e| {
        if e.is_not_found() {
            kinds::not_downloadable(format!("the file of task {task_id} is no longer stored"))
        } else {
            Problem::from(e)
        }
    })?;
    let size = meta.size;
    // Without validators to compare, a conditional range is served whole.
    let requested = if headers.contains_key(IF_RANGE) {
        RangeRequest::Full
    } else {
        range::parse(headers.get(RANGE).and_then(|v| v.to_str().ok()), size)
    };
    let (status, range) = match requested {
        RangeRequest::Full => (StatusCode::OK, None),
        RangeRequest::Partial(range) => (StatusCode::PARTIAL_CONTENT, Some(range)),
        RangeRequest::Unsatisfiable => {
            return Err(Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "Range not satisfiable",
                format!("the file is {size} bytes long"),
            )
            .header(CONTENT_RANGE, header(&format!("bytes */{size}"))));
        }
    };
    let object = storage.get(&file.bucket, &file.key, range.clone()).await?;
    let mut response = Response::new(Body::from_stream(object.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, header(&file.content_type));
    headers.insert(CONTENT_DISPOSITION, header(&content_disposition(&file.file_name)));
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let length = object.range.end - object.range.start;
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if range.is_some() {
        let content_range = format!("bytes {}-{}/{size}", object.range.start, object.range.end - 1);
        headers.insert(CONTENT_RANGE, header(&content_range));
    }
    Ok(response)
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// `attachment` with the name twice: a plain ASCII fallback and the exact
/// UTF-8 name (RFC 6266, RFC 8187 encoding).
pub(crate) fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn names_are_quoted_and_encoded() {
        assert_eq!(
            content_disposition("photos.zip"),
            "attachment; filename=\"photos.zip\"; filename*=UTF-8''photos.zip"
        );
        assert_eq!(
            content_disposition("résumé \"final\".zip"),
            "attachment; filename=\"r_sum_ _final_.zip\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.zip"
        );
    }
}
