//! `GET /api/tasks?status=&taskName=&limit=&offset=`: recent tasks,
//! newest first.

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use dtask_core::TaskStatus;
use dtask_core::infra::ProgressQuery;
use serde_json::{Value, json};

use crate::caller::RequestCaller;
use crate::problem::{ApiResult, kinds};
use crate::state::Shared;

/// The page size when none is asked for.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// The largest page.
pub(crate) const MAX_LIMIT: usize = 200;

/// One page of tasks: `{ items, total, limit, offset }`.
pub(crate) async fn list(
    State(state): State<Shared>,
    RequestCaller(caller): RequestCaller,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let query = parse_query(&state, &uri)?;
    let page = caller.list(&query).await?;
    Ok(Json(json!({
        "items": page.items,
        "total": page.total,
        "limit": query.limit,
        "offset": query.offset,
    })))
}

fn parse_query(state: &Shared, uri: &Uri) -> ApiResult<ProgressQuery> {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| kinds::invalid_request(format!("malformed query string: {e}")))?
        .0;
    let mut query = ProgressQuery {
        limit: DEFAULT_LIMIT,
        ..ProgressQuery::default()
    };
    for (name, value) in pairs {
        match name.as_str() {
            "status" => query.status = Some(status(&value)?),
            "taskName" if !value.is_empty() => {
                let name = state
                    .registry
                    .find(&value)
                    .map_or(value, |e| e.definition.name.to_owned());
                query.task_name = Some(name);
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        kinds::invalid_request(format!("`limit` must be 1 to {MAX_LIMIT}, not `{value}`"))
                    })?;
            }
            "offset" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(kinds::invalid_request(format!(
                        "`offset` must be a number, not `{value}`"
                    )));
                }
                // An offset past any count is an empty page, not an error.
                query.offset = value.parse().unwrap_or(usize::MAX);
            }
            _ => {}
        }
    }
    Ok(query)
}

/// Every status, as the wire names it.
pub(crate) const STATUSES: [TaskStatus; 9] = [
    TaskStatus::Pending,
    TaskStatus::Running,
    TaskStatus::Queued,
    TaskStatus::Compensating,
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Compensated,
    TaskStatus::Cancelled,
    TaskStatus::CompensationFailed,
];

fn status(value: &str) -> ApiResult<TaskStatus> {
    STATUSES.into_iter().find(|s| s.as_str() == value).ok_or_else(|| {
        let names: Vec<_> = STATUSES.iter().map(|s| s.as_str()).collect();
        kinds::invalid_request(format!("`status` is `{value}`; it must be one of {}", names.join(", ")))
    })
}
