//! `GET /api/tasks?status=&taskName=&submitter=&createdAfter=&createdBefore=&cursor=&limit=&offset=`:
//! recent tasks, newest first.

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use dtask_core::TaskStatus;
use dtask_core::history::{HistoryCursor, HistoryQuery};
use dtask_core::infra::ProgressQuery;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::caller::RequestCaller;
use crate::problem::{ApiResult, kinds};
use crate::state::Shared;

/// The page size when none is asked for.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// The largest page.
pub(crate) const MAX_LIMIT: usize = 200;

/// One page of tasks. From the task history when the host keeps one
/// (`{ items, limit, nextCursor }`, keyset pages), else from the progress
/// tracker (`{ items, total, limit, offset }`).
pub(crate) async fn list(
    State(state): State<Shared>,
    RequestCaller(caller): RequestCaller,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let filters = parse_query(&state, &uri)?;
    if caller.host().history().is_some() {
        if filters.offset > 0 {
            return Err(kinds::invalid_request(
                "this server lists tasks from its history, page by page: follow `nextCursor` with `cursor`, not `offset`",
            ));
        }
        let page = caller.history_list(&filters.history()).await?;
        let items: Vec<_> = page.items.into_iter().map(|record| record.progress).collect();
        return Ok(Json(json!({
            "items": items,
            "limit": filters.limit,
            "nextCursor": page.next_cursor.map(|cursor| cursor.to_string()),
        })));
    }
    if let Some(name) = filters.history_only() {
        return Err(kinds::invalid_request(format!(
            "`{name}` needs a task history, which this server does not keep (DTASK_HISTORY)"
        )));
    }
    let query = filters.progress();
    let page = caller.list(&query).await?;
    Ok(Json(json!({
        "items": page.items,
        "total": page.total,
        "limit": query.limit,
        "offset": query.offset,
    })))
}

/// The query string of the list.
#[derive(Default)]
struct Filters {
    status: Option<TaskStatus>,
    task_name: Option<String>,
    submitter: Option<String>,
    created_after: Option<OffsetDateTime>,
    created_before: Option<OffsetDateTime>,
    cursor: Option<HistoryCursor>,
    limit: usize,
    offset: usize,
}

impl Filters {
    fn history(&self) -> HistoryQuery {
        HistoryQuery {
            task_name: self.task_name.clone(),
            status: self.status,
            submitter: self.submitter.clone(),
            created_after: self.created_after,
            created_before: self.created_before,
            cursor: self.cursor,
            limit: self.limit,
        }
    }

    fn progress(&self) -> ProgressQuery {
        ProgressQuery {
            status: self.status,
            task_name: self.task_name.clone(),
            submitter: self.submitter.clone(),
            offset: self.offset,
            limit: self.limit,
        }
    }

    /// The first parameter given that only a history answers.
    fn history_only(&self) -> Option<&'static str> {
        [
            (self.created_after.is_some(), "createdAfter"),
            (self.created_before.is_some(), "createdBefore"),
            (self.cursor.is_some(), "cursor"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}

fn parse_query(state: &Shared, uri: &Uri) -> ApiResult<Filters> {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| kinds::invalid_request(format!("malformed query string: {e}")))?
        .0;
    let mut query = Filters {
        limit: DEFAULT_LIMIT,
        ..Filters::default()
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
            "submitter" if !value.is_empty() => query.submitter = Some(value),
            "createdAfter" => query.created_after = Some(timestamp("createdAfter", &value)?),
            "createdBefore" => query.created_before = Some(timestamp("createdBefore", &value)?),
            "cursor" if !value.is_empty() => {
                query.cursor = Some(value.parse().map_err(|_| {
                    kinds::invalid_request(format!("`cursor` `{value}` is not a `nextCursor` this server gave"))
                })?);
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

fn timestamp(name: &str, value: &str) -> ApiResult<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|e| {
        kinds::invalid_request(format!(
            "`{name}` must be an RFC 3339 time such as 2026-12-01T00:00:00Z, not `{value}`: {e}"
        ))
    })
}

fn status(value: &str) -> ApiResult<TaskStatus> {
    TaskStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == value)
        .ok_or_else(|| {
            let names: Vec<_> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
            kinds::invalid_request(format!("`status` is `{value}`; it must be one of {}", names.join(", ")))
        })
}
