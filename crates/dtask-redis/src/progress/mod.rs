//! [`RedisProgressTracker`]: progress snapshots in Redis hashes, live
//! streams over pub/sub.
//!
//! See [`scripts`] for the keys and fields. Every write is a script that
//! changes the hash and publishes in one step; a stream subscribes before
//! it reads the current snapshot, so it loses no change in between.

mod follow;
mod hub;
mod list;
pub(crate) mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dtask_core::infra::{
    CancellationFeed, CancellationNotice, CancellationStream, ProgressPage, ProgressQuery, ProgressStream,
    ProgressTracker,
};
use dtask_core::progress::TaskProgress;
use dtask_core::{Error, Format, Result, TaskId};
use futures::StreamExt;
use redis::{Script, ScriptInvocation};

use self::hub::{Event, Hub};
use crate::conn::{Commands, Connection, Timeouts, millis, redis_error, script_pipeline};

/// The tracker's key names.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    /// The task's hash, and the channel its snapshots are published on.
    fn task(&self, task_id: impl fmt::Display) -> String {
        format!("{}progress:{{{task_id}}}", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}{{progress}}:index", self.prefix)
    }

    fn expiring(&self) -> String {
        format!("{}{{progress}}:expiring", self.prefix)
    }

    /// The channel every cancellation request is published on, for the
    /// [`CancellationFeed`].
    fn cancellations(&self) -> String {
        format!("{}progress:cancellations", self.prefix)
    }
}

/// Reads snapshots (shared by the tracker and its streams).
#[derive(Clone)]
struct Reader {
    connection: Connection,
    keys: Keys,
}

impl Reader {
    /// The task's snapshot with the stored cancellation flag merged in.
    async fn get(&self, task_id: TaskId) -> Result<Option<TaskProgress>> {
        let mut conn = self.connection.manager.clone();
        let (snapshot, cancel): (Option<Vec<u8>>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.task(task_id))
            .arg(&["snapshot", "cancel"])
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        snapshot
            .map(|snapshot| decode(&snapshot, cancel.as_deref()))
            .transpose()
    }
}

/// A stored snapshot, with the stored cancellation flag merged in.
fn decode(snapshot: &[u8], cancel: Option<&str>) -> Result<TaskProgress> {
    let mut progress: TaskProgress = serde_json::from_slice(snapshot).map_err(codec_error)?;
    progress.cancel_requested |= cancel == Some("1");
    Ok(progress)
}

fn codec_error(error: serde_json::Error) -> Error {
    Error::Codec {
        format: Format::Json,
        source: Box::new(error),
    }
}

fn flag(set: bool) -> &'static str {
    if set { "1" } else { "0" }
}

fn unknown(task_id: TaskId) -> Error {
    Error::not_found(format!("task {task_id}"))
}

struct Inner {
    reader: Reader,
    hub: Hub,
    expiry: Option<Duration>,
}

/// A [`ProgressTracker`] on Redis: one hash per task, snapshots published
/// on the task's channel, an index sorted by creation time.
///
/// On a standalone server, `init`, `update`, `complete`, `get` and
/// `request_cancellation` are one round trip each (a script, sent as
/// `EVALSHA`, or an `HMGET`), and `init_many` and `update_many` one for
/// their whole batch (a pipeline). On a Redis Cluster, where the listing
/// index lives in another slot than the task, `init` is three (index,
/// script, index again), a terminal `update` or `complete` two (the
/// script, then the expiry set), and a batch one command per item, sent at
/// once. Writes
/// compare revisions in the script: a stale update is ignored, and once a
/// terminal snapshot is stored the task's snapshot is final. Ended tasks
/// expire after the progress expiry (24 hours unless configured) and are
/// dropped from the index when listing.
///
/// Each tracker holds one pub/sub connection, shared by all its streams
/// (each task's channel is subscribed while someone follows it) and its
/// [`CancellationFeed`]s (one channel every cancellation is also published
/// on), and restored, with every stream re-reading its task and every feed
/// told of the gap, when it drops.
///
/// Clones share their connections. Built by
/// [`RedisBackends`](crate::RedisBackends).
///
/// # Cancel safety
/// Each write is one script, applied whole or not at all (on a cluster,
/// with the index entries around it, which the next listing puts right):
/// a call dropped before its answer may or may not have been applied. A
/// stream's `next()` is cancel safe.
#[derive(Clone)]
pub struct RedisProgressTracker {
    inner: Arc<Inner>,
}

impl RedisProgressTracker {
    pub(crate) async fn connect(
        connection: Connection,
        prefix: String,
        expiry: Option<Duration>,
        timeouts: Timeouts,
    ) -> Result<Self> {
        let hub = Hub::connect(connection.pubsub.clone(), timeouts).await?;
        let reader = Reader {
            connection,
            keys: Keys { prefix },
        };
        Ok(Self {
            inner: Arc::new(Inner { reader, hub, expiry }),
        })
    }

    fn keys(&self) -> &Keys {
        &self.inner.reader.keys
    }

    fn manager(&self) -> Commands {
        self.inner.reader.connection.manager.clone()
    }

    fn expiry_ms(&self) -> u64 {
        self.inner.expiry.map_or(0, millis)
    }

    /// Sends `PING`.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the URL when the server does not answer.
    pub async fn ping(&self) -> Result<()> {
        self.inner.reader.connection.ping().await
    }

    /// Whether the tracker is on a Redis Cluster, where a script cannot
    /// reach the index and the expiry set (another slot than the task's).
    fn on_cluster(&self) -> bool {
        self.inner.reader.connection.manager.is_cluster()
    }

    /// Stores a newer snapshot; `Ok` also when it was ignored as stale.
    async fn record(&self, progress: &TaskProgress) -> Result<()> {
        let outcome: i64 = self
            .update_invocation(progress)?
            .invoke_async(&mut self.manager())
            .await
            .map_err(redis_error)?;
        if outcome == 2 {
            self.list_expiry(progress).await;
        }
        recorded(progress, outcome)
    }

    /// On a Redis Cluster, lists the ended task just stored in the expiry
    /// set, which the script could not reach (due on the server's clock,
    /// as on a standalone server). A failure only delays the task's
    /// removal from the index: a listing that meets its expired hash
    /// drops it then.
    pub(crate) async fn list_expiry(&self, progress: &TaskProgress) {
        if !self.on_cluster() || !progress.is_terminal() || self.inner.expiry.is_none() {
            return;
        }
        let listed = scripts::LIST_EXPIRY
            .key(self.keys().expiring())
            .arg(self.expiry_ms())
            .arg(progress.task_id.to_string())
            .invoke_async::<i64>(&mut self.manager())
            .await;
        if let Err(error) = listed {
            let task_id = progress.task_id;
            tracing::warn!(%task_id, %error, "listing an ended task's expiry failed; a listing drops it once expired");
        }
    }

    /// On a Redis Cluster, indexes `progress`'s task (`ZADD NX`: a task
    /// indexed already keeps its entry), which the script cannot do there.
    /// `init` does it before creating the hash, so that a task is never
    /// without its entry, and again after, in case a listing dropped the
    /// entry as vanished in between; a listing in turn re-indexes a task
    /// it dropped whose hash exists (see `list::forget`).
    async fn index(&self, progress: &TaskProgress) -> Result<()> {
        if !self.on_cluster() {
            return Ok(());
        }
        index_task(&self.inner.reader, &progress.task_id.to_string(), created_ms(progress)).await
    }

    /// The `UPDATE` script's invocation storing `progress`.
    fn update_invocation(&self, progress: &TaskProgress) -> Result<ScriptInvocation<'static>> {
        let mut invocation = scripts::UPDATE.prepare_invoke();
        self.add_update(&mut invocation, progress)?;
        Ok(invocation)
    }

    /// Adds the keys (the task's hash, and the expiry set but on a Redis
    /// Cluster) and the arguments of the Lua function `update` storing
    /// `progress` to `invocation` (see [`scripts::PRELUDE`]).
    pub(crate) fn add_update(&self, invocation: &mut ScriptInvocation<'static>, progress: &TaskProgress) -> Result<()> {
        let snapshot = serde_json::to_vec(progress).map_err(codec_error)?;
        let keys = self.keys();
        invocation.key(keys.task(progress.task_id));
        if !self.on_cluster() {
            invocation.key(keys.expiring());
        }
        invocation
            .arg(snapshot)
            .arg(progress.revision)
            .arg(progress.status.as_str())
            .arg(flag(progress.is_terminal()))
            .arg(self.expiry_ms())
            .arg(progress.task_id.to_string())
            .arg(flag(progress.cancel_requested));
        Ok(())
    }

    /// The `INIT` script's invocation recording `progress` first.
    fn init_invocation(&self, progress: &TaskProgress) -> Result<ScriptInvocation<'static>> {
        let snapshot = serde_json::to_vec(progress).map_err(codec_error)?;
        let keys = self.keys();
        let mut invocation = scripts::INIT.key(keys.task(progress.task_id));
        if !self.on_cluster() {
            invocation.key(keys.index()).key(keys.expiring());
        }
        invocation
            .arg(snapshot)
            .arg(progress.revision)
            .arg(flag(progress.cancel_requested))
            .arg(created_ms(progress))
            .arg(progress.status.as_str())
            .arg(&progress.task_name)
            .arg(flag(progress.is_terminal()))
            .arg(self.expiry_ms())
            .arg(progress.task_id.to_string())
            .arg(progress.submitter.as_deref().unwrap_or(""));
        Ok(invocation)
    }

    /// Runs `script` once per snapshot of `progress`, in one pipeline; one
    /// result per snapshot, as `judge` reads the script's answer.
    ///
    /// # Errors
    /// The pipeline's error when it failed as a whole (some of its scripts
    /// may have run), or a snapshot's encoding error.
    async fn pipelined(
        &self,
        script: &Script,
        progress: &[TaskProgress],
        invocation: impl Fn(&TaskProgress) -> Result<ScriptInvocation<'static>>,
        judge: fn(&TaskProgress, i64) -> Result<()>,
    ) -> Result<Vec<Result<()>>> {
        let invocations: Vec<_> = progress.iter().map(invocation).collect::<Result<_>>()?;
        let answers: Vec<i64> = (script_pipeline(script, &invocations)
            .query_async(&mut self.manager())
            .await)
            .map_err(redis_error)?;
        Ok(progress
            .iter()
            .zip(answers)
            .map(|(p, answer)| judge(p, answer))
            .collect())
    }
}

/// Indexes task `id`, created at `created_ms`, unless it is indexed
/// (`ZADD NX`): for a Redis Cluster, where the index is written apart from
/// the task's hash.
async fn index_task(reader: &Reader, id: &str, created_ms: i64) -> Result<()> {
    redis::cmd("ZADD")
        .arg(reader.keys.index())
        .arg("NX")
        .arg(created_ms)
        .arg(id)
        .query_async::<()>(&mut reader.connection.manager.clone())
        .await
        .map_err(redis_error)
}

/// When `progress`'s task was created, in ms since 1970 (its index score).
fn created_ms(progress: &TaskProgress) -> i64 {
    let ms = progress.created_at.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// What the `UPDATE` script's answer says.
fn recorded(progress: &TaskProgress, outcome: i64) -> Result<()> {
    if outcome == 0 {
        return Err(unknown(progress.task_id));
    }
    Ok(())
}

/// What the `INIT` script's answer says.
fn initialised(progress: &TaskProgress, created: i64) -> Result<()> {
    if created == 0 {
        return Err(Error::AlreadyExists {
            what: format!("task {}", progress.task_id),
        });
    }
    Ok(())
}

impl fmt::Debug for RedisProgressTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisProgressTracker")
            .field("url", &self.inner.reader.connection.url)
            .field("prefix", &self.keys().prefix)
            .field("expiry", &self.inner.expiry)
            .finish()
    }
}

#[async_trait]
impl ProgressTracker for RedisProgressTracker {
    async fn init(&self, progress: &TaskProgress) -> Result<()> {
        let invocation = self.init_invocation(progress)?;
        self.index(progress).await?;
        let created: i64 = invocation
            .invoke_async(&mut self.manager())
            .await
            .map_err(redis_error)?;
        self.index(progress).await?;
        if created == 1 {
            self.list_expiry(progress).await;
        }
        initialised(progress, created)
    }

    /// One pipeline for every snapshot. When it fails as a whole, every
    /// snapshot gets its error,
    /// as one `init` would: trying them one by one could find some
    /// recorded by the failed pipeline and call them known. On a Redis
    /// Cluster, which refuses a pipeline spanning slots, each is an `init`
    /// of its own, all sent at once.
    async fn init_many(&self, progress: &[TaskProgress]) -> Vec<Result<()>> {
        if self.on_cluster() {
            return futures::future::join_all(progress.iter().map(|p| self.init(p))).await;
        }
        let invocation = |p: &TaskProgress| self.init_invocation(p);
        match self.pipelined(&scripts::INIT, progress, invocation, initialised).await {
            Ok(results) => results,
            Err(error) => {
                let error = error.to_string();
                (progress.iter())
                    .map(|_| Err(Error::backend(crate::conn::BACKEND, error.clone())))
                    .collect()
            }
        }
    }

    /// Stores `progress` unless the stored snapshot has the same or a later
    /// revision, or has ended; keeps a requested cancellation.
    async fn update(&self, progress: &TaskProgress) -> Result<()> {
        self.record(progress).await
    }

    /// One pipeline for every snapshot. When it fails as a whole, each
    /// snapshot is recorded on its own (a snapshot stored twice is ignored
    /// the second time). On a Redis Cluster, each is recorded on its own,
    /// all at once.
    async fn update_many(&self, progress: &[TaskProgress]) -> Vec<Result<()>> {
        if self.on_cluster() {
            return futures::future::join_all(progress.iter().map(|p| self.record(p))).await;
        }
        let invocation = |p: &TaskProgress| self.update_invocation(p);
        if let Ok(results) = self.pipelined(&scripts::UPDATE, progress, invocation, recorded).await {
            return results;
        }
        let mut results = Vec::with_capacity(progress.len());
        for snapshot in progress {
            results.push(self.record(snapshot).await);
        }
        results
    }

    /// Stores the terminal `progress` (over any running snapshot, whatever
    /// its revision), publishes it and starts the hash's expiry.
    async fn complete(&self, progress: &TaskProgress) -> Result<()> {
        if !progress.is_terminal() {
            return Err(Error::invalid(
                "progress",
                format!(
                    "task {} cannot complete as {}",
                    progress.task_id,
                    progress.status.as_str()
                ),
            ));
        }
        self.record(progress).await
    }

    async fn get(&self, task_id: TaskId) -> Result<Option<TaskProgress>> {
        self.inner.reader.get(task_id).await
    }

    /// Subscribes to the task's channel, then reads its snapshot.
    ///
    /// # Cancel safety
    /// The stream's `next()` is cancel safe: a dropped call loses no
    /// snapshot.
    async fn stream(&self, task_id: TaskId) -> Result<ProgressStream> {
        let subscription = self.inner.hub.subscribe(self.keys().task(task_id)).await?;
        let current = self.get(task_id).await?.ok_or_else(|| unknown(task_id))?;
        Ok(follow::follow(current, subscription, self.inner.reader.clone()))
    }

    /// Sets the sticky cancellation flag of a running task (without a new
    /// revision) and publishes its snapshot.
    async fn request_cancellation(&self, task_id: TaskId) -> Result<TaskProgress> {
        let answer: Option<(Vec<u8>, String)> = scripts::CANCEL
            .key(self.keys().task(task_id))
            .arg(self.keys().cancellations())
            .invoke_async(&mut self.manager())
            .await
            .map_err(redis_error)?;
        let (snapshot, cancel) = answer.ok_or_else(|| unknown(task_id))?;
        decode(&snapshot, Some(&cancel))
    }

    async fn list(&self, query: &ProgressQuery) -> Result<ProgressPage> {
        list::list(&self.inner.reader, query).await
    }

    async fn ping(&self) -> Result<()> {
        RedisProgressTracker::ping(self).await
    }
}

/// The requests come through the tracker's shared pub/sub connection: one
/// channel, which the cancellation script publishes to as well as to the
/// task's own. When that connection drops and comes back, the feed tells a
/// [`CancellationNotice::Gap`].
#[async_trait]
impl CancellationFeed for RedisProgressTracker {
    async fn cancellations(&self) -> Result<CancellationStream> {
        let subscription = self.inner.hub.subscribe(self.keys().cancellations()).await?;
        let notices = futures::stream::unfold(subscription, |mut subscription| async move {
            let notice = match subscription.receiver.recv().await? {
                Event::Progress(progress) => CancellationNotice::Requested(progress.task_id),
                Event::Resync => CancellationNotice::Gap,
            };
            Some((notice, subscription))
        });
        Ok(notices.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts mark a cancellation by rewriting this exact text of the
    /// snapshot's JSON: it must be there.
    #[test]
    fn the_cancel_flag_is_where_the_scripts_look_for_it() {
        let json = serde_json::json!({
            "taskId": TaskId::new(),
            "taskName": "Test",
            "status": "running",
            "totalSteps": 0,
            "completedSteps": 0,
            "percent": 0.0,
            "steps": [],
            "cancellable": true,
            "isComplete": false,
            "revision": 1,
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
        });
        let progress: TaskProgress = serde_json::from_value(json).unwrap();
        let text = String::from_utf8(serde_json::to_vec(&progress).unwrap()).unwrap();
        assert_eq!(text.matches(r#""cancelRequested":false"#).count(), 1, "{text}");
    }
}
