//! Listing tasks, newest first, from the index sorted by creation time.
//!
//! Without filters a page costs two round trips (the range with the
//! total, then the snapshots). Filtering by status, name or submitter
//! reads the small `status`, `name` and `submitter` fields of every indexed
//! task, 500 at a time in one pipeline (on a Redis Cluster, 500 commands
//! sent at once), then the page's snapshots: its cost
//! grows with the index, which the progress expiry keeps bounded.

use std::collections::HashSet;

use dtask_core::Result;
use dtask_core::infra::{ProgressPage, ProgressQuery};
use dtask_core::progress::TaskProgress;
use redis::FromRedisValue;

use super::{Reader, decode, scripts};
use crate::conn::redis_error;

/// How many index entries a filtered listing reads per round trip.
const PAGE: usize = 500;

pub(super) async fn list(reader: &Reader, query: &ProgressQuery) -> Result<ProgressPage> {
    if query.status.is_none() && query.task_name.is_none() && query.submitter.is_none() {
        return unfiltered(reader, query).await;
    }
    filtered(reader, query).await
}

/// Drops expired tasks from the index, then returns its size and the ids
/// ranked `start..start + count`.
async fn range(reader: &Reader, start: usize, count: usize) -> Result<(usize, Vec<String>)> {
    let first = i64::try_from(start).unwrap_or(i64::MAX);
    let last = first.saturating_add(i64::try_from(count).unwrap_or(i64::MAX)) - 1;
    scripts::RANGE
        .key(reader.keys.index())
        .key(reader.keys.expiring())
        .arg(first)
        .arg(last)
        .invoke_async(&mut reader.connection.manager.clone())
        .await
        .map_err(redis_error)
}

/// The snapshots of `ids` in order, skipping (and dropping from the index)
/// those that have vanished; returns how many did.
async fn fetch(reader: &Reader, ids: &[String]) -> Result<(Vec<TaskProgress>, usize)> {
    if ids.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let rows: Vec<(Option<Vec<u8>>, Option<String>)> = fields(reader, ids, &["snapshot", "cancel"]).await?;
    let mut items = Vec::with_capacity(rows.len());
    let mut vanished = Vec::new();
    for (id, (snapshot, cancel)) in ids.iter().zip(rows) {
        match snapshot {
            Some(snapshot) => items.push(decode(&snapshot, cancel.as_deref())?),
            None => vanished.push(id.as_str()),
        }
    }
    forget(reader, &vanished).await?;
    Ok((items, vanished.len()))
}

/// The `fields` of each task of `ids`, in order: one pipeline of `HMGET`s
/// on a server; on a Redis Cluster, which refuses a pipeline spanning
/// slots, one `HMGET` each, all sent at once.
async fn fields<T: FromRedisValue>(reader: &Reader, ids: &[String], fields: &[&str]) -> Result<Vec<T>> {
    let connection = reader.connection.manager.clone();
    if connection.is_cluster() {
        let reads = ids.iter().map(|id| {
            let mut connection = connection.clone();
            let mut command = redis::cmd("HMGET");
            command.arg(reader.keys.task(id)).arg(fields);
            async move { command.query_async::<T>(&mut connection).await }
        });
        return futures::future::try_join_all(reads).await.map_err(redis_error);
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("HMGET").arg(reader.keys.task(id)).arg(fields);
    }
    pipe.query_async(&mut connection.clone()).await.map_err(redis_error)
}

/// Drops tasks whose hash has vanished without expiring (deleted, or
/// evicted by the server's memory policy) from the index.
///
/// On a Redis Cluster an `init` indexes its task before it creates the
/// hash, so a task found without its hash may be one being created: after
/// dropping them, those whose hash exists now are indexed again.
async fn forget(reader: &Reader, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut connection = reader.connection.manager.clone();
    redis::cmd("ZREM")
        .arg(reader.keys.index())
        .arg(ids)
        .query_async::<()>(&mut connection)
        .await
        .map_err(redis_error)?;
    if !connection.is_cluster() {
        return Ok(());
    }
    let recheck = ids.iter().map(|id| async move {
        let created: Option<i64> = redis::cmd("HGET")
            .arg(reader.keys.task(id))
            .arg("created")
            .query_async(&mut reader.connection.manager.clone())
            .await
            .map_err(redis_error)?;
        match created {
            Some(created) => super::index_task(reader, id, created).await,
            None => Ok(()),
        }
    });
    futures::future::try_join_all(recheck).await.map(drop)
}

async fn unfiltered(reader: &Reader, query: &ProgressQuery) -> Result<ProgressPage> {
    let (total, ids) = range(reader, query.offset, query.limit).await?;
    let (items, vanished) = fetch(reader, &ids).await?;
    Ok(ProgressPage {
        items,
        total: total.saturating_sub(vanished),
    })
}

fn matches(query: &ProgressQuery, status: &str, name: &str, submitter: Option<&str>) -> bool {
    query.status.is_none_or(|wanted| wanted.as_str() == status)
        && query.task_name.as_deref().is_none_or(|wanted| wanted == name)
        && query
            .submitter
            .as_deref()
            .is_none_or(|wanted| Some(wanted) == submitter)
}

async fn filtered(reader: &Reader, query: &ProgressQuery) -> Result<ProgressPage> {
    let window = query.offset..query.offset.saturating_add(query.limit);
    let (mut total, mut start) = (0, 0);
    let (mut page, mut seen, mut vanished) = (Vec::new(), HashSet::new(), Vec::new());
    loop {
        let (_, ids) = range(reader, start, PAGE).await?;
        if ids.is_empty() {
            break;
        }
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
            fields(reader, &ids, &["status", "name", "submitter"]).await?;
        let count = ids.len();
        for (id, row) in ids.into_iter().zip(rows) {
            let (Some(status), Some(name), submitter) = row else {
                vanished.push(id);
                continue;
            };
            // Written empty for a task no principal submitted.
            let submitter = submitter.filter(|s| !s.is_empty());
            // A task indexed meanwhile shifts the ranks: never count one twice.
            if matches(query, &status, &name, submitter.as_deref()) && seen.insert(id.clone()) {
                if window.contains(&total) {
                    page.push(id);
                }
                total += 1;
            }
        }
        if count < PAGE {
            break;
        }
        start += PAGE;
    }
    let vanished: Vec<&str> = vanished.iter().map(String::as_str).collect();
    forget(reader, &vanished).await?;
    let (mut items, _) = fetch(reader, &page).await?;
    // A task may have changed state since its status was read.
    items.retain(|p| matches(query, p.status.as_str(), &p.task_name, p.submitter.as_deref()));
    Ok(ProgressPage { items, total })
}
