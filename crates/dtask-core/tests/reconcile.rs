//! The orphan reconciler on the in-memory backends: which objects it
//! deletes, which it never touches, dry runs, the grace period, the
//! re-check before deleting, and real tasks run by the test host.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dtask_core::codec::{Codec, Format, KeyRing, Payload};
use dtask_core::infra::{
    ByteStream, GetResult, ObjectMeta, ObjectStore, ObjectStoreExt, ProgressPage, ProgressQuery, ProgressStream,
    ProgressTracker, SagaStateStore, StoredState,
};
use dtask_core::memory::{MemoryObjectStore, MemoryProgressTracker, MemoryStateStore};
use dtask_core::progress::ConditionSnapshot;
use dtask_core::reconcile::{OrphanReason, ReconcileMode, ReconcileReport, Reconciler, spawn_periodic};
use dtask_core::task::{DataUpdate, StepDefinition, StepKind};
use dtask_core::testing::TestHost;
use dtask_core::{
    Error, Mode, RetryPolicy, SCHEMA_VERSION, SagaSnapshot, SagaStateSerializer, StepContext, StepError, StepHost,
    Task, TaskDefinition, TaskId, TaskProgress, TaskStatus,
};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

const BUCKET: &str = "stash-files";
const OTHER_BUCKET: &str = "stash-results";
const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// A task that stores one object on the API side and then, on the worker,
// completes or fails as its request says. Its compensation leaves the
// object behind: the orphan the reconciler exists for.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StashRequest {
    fail: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StashData {
    store: Option<String>,
    finish: Option<()>,
}

const fn step(name: &'static str, order: u32, host: StepHost) -> StepDefinition {
    StepDefinition {
        name,
        order,
        kind: StepKind::Custom,
        host,
        group: None,
        retry: RetryPolicy::task_default(0),
        timeout: None,
        condition: None,
        compensable: true,
    }
}

static STASH: TaskDefinition = TaskDefinition {
    name: "Stash",
    queue: "stash",
    max_retries: 0,
    timeout: Duration::from_secs(60),
    mode: Mode::InProcess,
    format: Format::Json,
    cancellable: true,
    required_roles: &[],
    encrypt_messages: false,
    version: 1,
    steps: &[step("Store", 1, StepHost::Api), step("Finish", 2, StepHost::Worker)],
    groups: &[],
    depends_on: &[],
};

struct Stash;

impl Task for Stash {
    type Request = StashRequest;
    type Response = String;
    type Data = StashData;

    fn definition() -> &'static TaskDefinition {
        &STASH
    }

    fn run_step<'a>(
        &'a self,
        step: usize,
        cx: &'a StepContext,
        request: &'a StashRequest,
        _data: &'a StashData,
    ) -> BoxFuture<'a, Result<DataUpdate<StashData>, StepError>> {
        Box::pin(async move {
            if step == 0 {
                let key = format!("{}/{}/blob", cx.task_id(), cx.step_name());
                cx.storage()
                    .put_bytes(BUCKET, &key, Bytes::from_static(b"stashed"))
                    .await
                    .map_err(|e| StepError::transient("storing").with_source(e))?;
                Ok(Box::new(move |data: &mut StashData| data.store = Some(key)) as DataUpdate<StashData>)
            } else if request.fail {
                Err(StepError::permanent("asked to fail"))
            } else {
                Ok(Box::new(|data: &mut StashData| data.finish = Some(())) as DataUpdate<StashData>)
            }
        })
    }

    fn adopt_output(step: usize, from: &mut StashData, into: &mut StashData) {
        match step {
            0 => into.store = from.store.take(),
            _ => into.finish = from.finish.take(),
        }
    }

    fn compensate_step<'a>(
        &'a self,
        _step: usize,
        _cx: &'a StepContext,
        _request: &'a StashRequest,
        _data: &'a StashData,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }

    fn evaluate_condition(_step: usize, _request: &StashRequest, _data: &StashData) -> Option<ConditionSnapshot> {
        None
    }

    fn response(&self, _request: &StashRequest, data: &StashData) -> Result<String, StepError> {
        data.store.clone().ok_or_else(|| StepError::permanent("nothing stored"))
    }
}

// ---------------------------------------------------------------------------
// An object store whose objects can be made older, and whose deletes can be
// made to fail, around the in-memory store.

#[derive(Debug, Default)]
struct AgedStore {
    inner: MemoryObjectStore,
    ages: Mutex<HashMap<(String, String), Duration>>,
    refuse_delete: Mutex<HashSet<String>>,
}

impl AgedStore {
    /// Stores `key` in `bucket` as if written `age` ago.
    async fn put_aged(&self, bucket: &str, key: &str, age: Duration) {
        self.inner
            .put_bytes(bucket, key, Bytes::from(key.to_owned()))
            .await
            .expect("stored");
        self.ages
            .lock()
            .unwrap()
            .insert((bucket.to_owned(), key.to_owned()), age);
    }

    fn age(&self, mut meta: ObjectMeta) -> ObjectMeta {
        if let Some(age) = self.ages.lock().unwrap().get(&(meta.bucket.clone(), meta.key.clone())) {
            meta.last_modified -= *age;
        }
        meta
    }

    async fn keys(&self, bucket: &str) -> Vec<String> {
        let listed = self.inner.list(bucket, "").await.expect("listed");
        listed.into_iter().map(|m| m.key).collect()
    }
}

#[async_trait]
impl ObjectStore for AgedStore {
    async fn put(&self, bucket: &str, key: &str, body: ByteStream) -> dtask_core::Result<ObjectMeta> {
        self.inner.put(bucket, key, body).await
    }

    async fn get(&self, bucket: &str, key: &str, range: Option<Range<u64>>) -> dtask_core::Result<GetResult> {
        let mut got = self.inner.get(bucket, key, range).await?;
        got.meta = self.age(got.meta);
        Ok(got)
    }

    async fn head(&self, bucket: &str, key: &str) -> dtask_core::Result<ObjectMeta> {
        Ok(self.age(self.inner.head(bucket, key).await?))
    }

    async fn delete(&self, bucket: &str, key: &str) -> dtask_core::Result<()> {
        if self.refuse_delete.lock().unwrap().contains(key) {
            return Err(Error::backend("aged", "delete refused by the test"));
        }
        self.inner.delete(bucket, key).await
    }

    async fn list(&self, bucket: &str, prefix: &str) -> dtask_core::Result<Vec<ObjectMeta>> {
        let listed = self.inner.list(bucket, prefix).await?;
        Ok(listed.into_iter().map(|m| self.age(m)).collect())
    }
}

// ---------------------------------------------------------------------------
// A progress tracker that does not know a task on its first lookup: the
// task's progress becomes visible between the listing and the deletion.

#[derive(Debug, Default)]
struct LateTracker {
    inner: MemoryProgressTracker,
    looked_up: Mutex<HashSet<TaskId>>,
}

#[async_trait]
impl ProgressTracker for LateTracker {
    async fn init(&self, progress: &TaskProgress) -> dtask_core::Result<()> {
        self.inner.init(progress).await
    }

    async fn update(&self, progress: &TaskProgress) -> dtask_core::Result<()> {
        self.inner.update(progress).await
    }

    async fn complete(&self, progress: &TaskProgress) -> dtask_core::Result<()> {
        self.inner.complete(progress).await
    }

    async fn get(&self, task_id: TaskId) -> dtask_core::Result<Option<TaskProgress>> {
        if self.looked_up.lock().unwrap().insert(task_id) {
            return Ok(None);
        }
        self.inner.get(task_id).await
    }

    async fn stream(&self, task_id: TaskId) -> dtask_core::Result<ProgressStream> {
        self.inner.stream(task_id).await
    }

    async fn request_cancellation(&self, task_id: TaskId) -> dtask_core::Result<TaskProgress> {
        self.inner.request_cancellation(task_id).await
    }

    async fn list(&self, query: &ProgressQuery) -> dtask_core::Result<ProgressPage> {
        self.inner.list(query).await
    }
}

// ---------------------------------------------------------------------------
// Helpers.

/// The in-memory services and a reconciler over both buckets.
struct Fixture {
    store: Arc<AgedStore>,
    progress: Arc<MemoryProgressTracker>,
    state: Arc<MemoryStateStore>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            store: Arc::new(AgedStore::default()),
            progress: Arc::new(MemoryProgressTracker::new()),
            state: Arc::new(MemoryStateStore::new()),
        }
    }

    fn reconciler(&self, grace: Duration) -> Reconciler {
        Reconciler::new(self.store.clone(), self.progress.clone(), self.state.clone())
            .with_buckets([BUCKET, OTHER_BUCKET])
            .with_grace(grace)
    }

    /// Records a task in `status` in the progress tracker.
    async fn record(&self, status: TaskStatus) -> TaskId {
        let task_id = TaskId::new();
        record_progress(&*self.progress, task_id, status).await;
        task_id
    }

    /// Stores two objects of `task_id` (one per bucket), `age` old.
    async fn objects_of(&self, task_id: TaskId, age: Duration) -> [String; 2] {
        let (a, b) = (
            format!("{task_id}/Store/0000-a.txt"),
            format!("{task_id}/Upload/0000-b.zip"),
        );
        self.store.put_aged(BUCKET, &a, age).await;
        self.store.put_aged(OTHER_BUCKET, &b, age).await;
        [a, b]
    }

    async fn all_keys(&self) -> Vec<String> {
        let mut keys = self.store.keys(BUCKET).await;
        keys.extend(self.store.keys(OTHER_BUCKET).await);
        keys
    }
}

async fn record_progress(tracker: &dyn ProgressTracker, task_id: TaskId, status: TaskStatus) {
    let mut progress = TaskProgress::new(task_id, &STASH, OffsetDateTime::now_utc());
    tracker.init(&progress).await.expect("init");
    if status == TaskStatus::Pending {
        return;
    }
    progress.status = status;
    progress.revision = 1;
    progress.is_complete = status.is_terminal();
    if status.is_terminal() {
        tracker.complete(&progress).await.expect("complete");
    } else {
        tracker.update(&progress).await.expect("update");
    }
}

/// A saga snapshot of a Stash task in `status`.
fn snapshot(task_id: TaskId, status: TaskStatus) -> SagaSnapshot<Stash> {
    let now = OffsetDateTime::now_utc();
    let mut progress = TaskProgress::new(task_id, &STASH, now);
    progress.status = status;
    SagaSnapshot {
        schema_version: SCHEMA_VERSION,
        request: Arc::new(StashRequest::default()),
        data: StashData::default(),
        progress,
        response: None,
        deadline: now,
    }
}

/// The (bucket, key, task, reason) of every orphan of a report.
fn orphans(report: &ReconcileReport) -> Vec<(String, String, TaskId, OrphanReason)> {
    report
        .orphans
        .iter()
        .map(|o| (o.bucket.clone(), o.key.clone(), o.task_id, o.reason))
        .collect()
}

fn keys_of(report: &ReconcileReport, task_id: TaskId) -> Vec<String> {
    report
        .orphans
        .iter()
        .filter(|o| o.task_id == task_id)
        .map(|o| o.key.clone())
        .collect()
}

// ---------------------------------------------------------------------------
// The rules.

#[tokio::test]
async fn objects_of_a_completed_task_are_kept() {
    let fx = Fixture::new();
    let task = fx.record(TaskStatus::Completed).await;
    let keys = fx.objects_of(task, 2 * HOUR).await;

    let report = fx.reconciler(HOUR).run(ReconcileMode::Delete).await.unwrap();

    assert!(report.orphans.is_empty(), "{report}");
    assert_eq!(report.kept.completed, 2);
    assert_eq!(fx.all_keys().await, keys);
}

#[tokio::test]
async fn objects_of_a_completed_task_past_the_retention_are_deleted() {
    let fx = Fixture::new();
    let old = fx.record(TaskStatus::Completed).await;
    let old_keys = fx.objects_of(old, 3 * HOUR).await;
    let recent = fx.record(TaskStatus::Completed).await;
    let recent_keys = fx.objects_of(recent, 2 * HOUR + HOUR / 2).await;
    let reconciler = fx.reconciler(HOUR).with_completed_retention(3 * HOUR);

    let dry = reconciler.run(ReconcileMode::DryRun).await.unwrap();
    assert_eq!(keys_of(&dry, old), old_keys);
    assert_eq!(fx.all_keys().await.len(), 4, "a dry run deletes nothing");

    let report = reconciler.run(ReconcileMode::Delete).await.unwrap();
    let reasons: Vec<OrphanReason> = orphans(&report).into_iter().map(|o| o.3).collect();
    assert_eq!(reasons, [OrphanReason::Expired; 2], "{report}");
    assert_eq!(keys_of(&report, old), old_keys);
    assert_eq!(report.kept.completed, 2, "the recent task's objects are kept");
    assert_eq!(fx.all_keys().await, recent_keys);
}

#[tokio::test]
async fn objects_of_failed_cancelled_and_compensated_tasks_are_deleted() {
    let fx = Fixture::new();
    let ended = [
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Compensated,
        TaskStatus::CompensationFailed,
    ];
    let mut tasks = Vec::new();
    for status in ended {
        let task = fx.record(status).await;
        let keys = fx.objects_of(task, 2 * HOUR).await;
        tasks.push((task, status, keys));
    }

    let report = fx.reconciler(HOUR).run(ReconcileMode::Delete).await.unwrap();

    assert_eq!(report.orphans.len(), 8, "{report}");
    for (task, status, keys) in &tasks {
        assert_eq!(keys_of(&report, *task), keys.to_vec(), "{status:?}");
        let reasons: HashSet<_> = report
            .orphans
            .iter()
            .filter(|o| o.task_id == *task)
            .map(|o| o.reason)
            .collect();
        assert_eq!(reasons, HashSet::from([OrphanReason::Ended(*status)]));
    }
    assert!(report.failed.is_empty());
    assert_eq!(report.kept.total(), 0);
    assert!(fx.all_keys().await.is_empty(), "every orphan is gone");
}

#[tokio::test]
async fn objects_of_an_unknown_task_are_deleted_only_past_the_grace() {
    let fx = Fixture::new();
    let unknown = TaskId::new();
    let old = format!("{unknown}/Store/0000-old.bin");
    let young = format!("{unknown}/Store/0001-young.bin");
    fx.store.put_aged(BUCKET, &old, HOUR + Duration::from_secs(60)).await;
    fx.store.put_aged(BUCKET, &young, HOUR - Duration::from_secs(60)).await;

    let report = fx.reconciler(HOUR).run(ReconcileMode::Delete).await.unwrap();

    assert_eq!(
        orphans(&report),
        [(BUCKET.to_owned(), old, unknown, OrphanReason::Unknown)],
        "{report}"
    );
    assert_eq!(report.kept.too_young, 1);
    assert_eq!(fx.store.keys(BUCKET).await, std::slice::from_ref(&young));

    // A shorter grace: the young object is old enough now.
    let report = fx
        .reconciler(Duration::from_secs(30 * 60))
        .run(ReconcileMode::Delete)
        .await
        .unwrap();
    assert_eq!(keys_of(&report, unknown), [young]);
    assert!(fx.store.keys(BUCKET).await.is_empty());
}

#[tokio::test]
async fn a_just_written_object_is_too_young_for_the_default_grace() {
    // The real clock: objects the in-memory store stamps now.
    let fx = Fixture::new();
    let unknown = TaskId::new();
    let failed = fx.record(TaskStatus::Failed).await;
    fx.objects_of(unknown, Duration::ZERO).await;
    fx.objects_of(failed, Duration::ZERO).await;

    let reconciler =
        Reconciler::new(fx.store.clone(), fx.progress.clone(), fx.state.clone()).with_buckets([BUCKET, OTHER_BUCKET]);
    assert_eq!(reconciler.grace(), dtask_core::reconcile::DEFAULT_GRACE);
    let report = reconciler.run(ReconcileMode::Delete).await.unwrap();
    assert!(report.orphans.is_empty(), "{report}");
    assert_eq!(report.kept.too_young, 4);

    // With no grace, the same objects go.
    let report = fx.reconciler(Duration::ZERO).run(ReconcileMode::Delete).await.unwrap();
    assert_eq!(report.orphans.len(), 4, "{report}");
    assert!(fx.all_keys().await.is_empty());
}

#[tokio::test]
async fn objects_of_live_tasks_are_never_touched() {
    let fx = Fixture::new();
    let mut expected = Vec::new();
    for status in [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Queued,
        TaskStatus::Compensating,
    ] {
        let task = fx.record(status).await;
        expected.extend(fx.objects_of(task, 48 * HOUR).await);
    }

    let report = fx.reconciler(Duration::ZERO).run(ReconcileMode::Delete).await.unwrap();

    assert!(report.orphans.is_empty(), "{report}");
    assert_eq!(report.kept.live, 8);
    let mut keys = fx.all_keys().await;
    keys.sort();
    expected.sort();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn a_dry_run_deletes_nothing_and_reports_what_a_real_run_deletes() {
    let fx = Fixture::new();
    let failed = fx.record(TaskStatus::Failed).await;
    let completed = fx.record(TaskStatus::Completed).await;
    let running = fx.record(TaskStatus::Running).await;
    let unknown = TaskId::new();
    for task in [failed, completed, running, unknown] {
        fx.objects_of(task, 2 * HOUR).await;
    }
    fx.store.put_aged(BUCKET, "notes/readme.txt", 2 * HOUR).await;
    let young = TaskId::new();
    fx.objects_of(young, Duration::from_secs(5)).await;
    let before = fx.all_keys().await;

    let dry = fx.reconciler(HOUR).run(ReconcileMode::DryRun).await.unwrap();
    assert_eq!(fx.all_keys().await, before, "a dry run deletes nothing");
    assert_eq!(dry.mode, ReconcileMode::DryRun);
    assert_eq!(dry.orphans.len(), 4, "{dry}");

    let real = fx.reconciler(HOUR).run(ReconcileMode::Delete).await.unwrap();
    assert_eq!(orphans(&dry), orphans(&real));
    assert_eq!(dry.kept, real.kept);
    assert_eq!(real.kept.completed, 2);
    assert_eq!(real.kept.live, 2);
    assert_eq!(real.kept.too_young, 2);
    assert_eq!(real.kept.foreign, 1);

    let remaining = fx.all_keys().await;
    assert_eq!(remaining.len(), before.len() - 4);
    for orphan in &real.orphans {
        assert!(!remaining.contains(&orphan.key), "{} is gone", orphan.key);
        assert!([failed, unknown].contains(&orphan.task_id));
    }

    // The report reads as one line per object and a summary.
    let dry_text = dry.to_string();
    let lines: Vec<&str> = dry_text.lines().collect();
    assert_eq!(lines.len(), 5, "{dry_text}");
    assert!(lines[..4].iter().all(|l| l.starts_with("would delete ")), "{dry_text}");
    assert!(lines[4].starts_with("dry run: would delete 4 objects"), "{dry_text}");
    assert!(dry_text.contains(&format!("(task {failed}, failed, ")), "{dry_text}");
    assert!(
        dry_text.contains(&format!("(task {unknown}, unknown task, ")),
        "{dry_text}"
    );
    let real_text = real.to_string();
    assert_eq!(real_text.lines().filter(|l| l.starts_with("deleted ")).count(), 4);
    assert!(real_text.contains("kept 7: 2 live, 2 completed, 2 too young, 1 foreign keys, 0 unreadable"));
}

#[tokio::test]
async fn keys_that_do_not_start_with_a_task_id_are_left_alone_and_counted() {
    let fx = Fixture::new();
    let id = TaskId::new();
    let foreign = [
        "readme.txt".to_owned(),
        "backups/2024/db.tar".to_owned(),
        format!("{}/Store/x", id.to_string().to_uppercase()),
        format!("{}/Store/x", id.as_uuid().simple()),
        format!("{id}.zip"),
        format!("x{id}/Store/x"),
    ];
    for key in &foreign {
        fx.store.put_aged(BUCKET, key, 100 * HOUR).await;
    }

    let report = fx.reconciler(Duration::ZERO).run(ReconcileMode::Delete).await.unwrap();

    assert!(report.orphans.is_empty(), "{report}");
    assert_eq!(report.kept.foreign, foreign.len());
    assert_eq!(fx.store.keys(BUCKET).await.len(), foreign.len());
}

#[tokio::test]
async fn a_task_known_only_by_its_saga_state_is_judged_by_its_status() {
    let fx = Fixture::new();
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    for format in [Format::Json, Format::MessagePack, Format::Protobuf] {
        for status in [TaskStatus::Completed, TaskStatus::Running, TaskStatus::Cancelled] {
            let task = TaskId::new();
            let payload = Codec::new(format).encode_state(&snapshot(task, status)).unwrap();
            fx.state.save(task, StoredState { fence: 7, payload }).await.unwrap();
            let keys = fx.objects_of(task, 2 * HOUR).await;
            if status == TaskStatus::Cancelled {
                deleted.push((task, keys));
            } else {
                kept.extend(keys);
            }
        }
    }

    let report = fx.reconciler(HOUR).run(ReconcileMode::Delete).await.unwrap();

    for (task, keys) in &deleted {
        assert_eq!(keys_of(&report, *task), keys.to_vec(), "{report}");
    }
    assert!(
        report
            .orphans
            .iter()
            .all(|o| o.reason == OrphanReason::Ended(TaskStatus::Cancelled))
    );
    assert_eq!(report.orphans.len(), 6);
    assert_eq!(report.kept.completed, 6);
    assert_eq!(report.kept.live, 6);
    let mut remaining = fx.all_keys().await;
    remaining.sort();
    kept.sort();
    assert_eq!(remaining, kept);
}

#[tokio::test]
async fn an_in_memory_saga_state_is_read_only_for_registered_tasks() {
    let fx = Fixture::new();
    let task = TaskId::new();
    let payload = Payload::in_memory(snapshot(task, TaskStatus::Failed));
    fx.state.save(task, StoredState { fence: 1, payload }).await.unwrap();
    let keys = fx.objects_of(task, 2 * HOUR).await;

    // Not readable without the task's type: kept.
    let report = fx.reconciler(HOUR).run(ReconcileMode::Delete).await.unwrap();
    assert!(report.orphans.is_empty(), "{report}");
    assert_eq!(report.kept.unreadable, 2);

    // With it, the status shows.
    let report = fx
        .reconciler(HOUR)
        .with_task::<Stash>()
        .run(ReconcileMode::Delete)
        .await
        .unwrap();
    assert_eq!(keys_of(&report, task), keys.to_vec(), "{report}");
    assert!(fx.all_keys().await.is_empty());
}

#[tokio::test]
async fn a_sealed_saga_state_is_judged_only_with_the_key_ring() {
    let fx = Fixture::new();
    let ring = || KeyRing::new([("k1", [7u8; 32])]).unwrap();
    let task = TaskId::new();
    let format = Format::MessagePack;
    let encoded = Codec::new(format)
        .serialize_state(&snapshot(task, TaskStatus::Failed))
        .unwrap();
    let payload = Payload::Encoded {
        format,
        bytes: ring().seal(task, format, &encoded),
    };
    fx.state.save(task, StoredState { fence: 1, payload }).await.unwrap();
    let keys = fx.objects_of(task, 2 * HOUR).await;

    // Without the keys it cannot be read: kept.
    let report = fx.reconciler(HOUR).run(ReconcileMode::Delete).await.unwrap();
    assert!(report.orphans.is_empty(), "{report}");
    assert_eq!(report.kept.unreadable, 2);

    // With them, the failed task's objects go.
    let report = fx
        .reconciler(HOUR)
        .with_key_ring(ring())
        .run(ReconcileMode::Delete)
        .await
        .unwrap();
    assert_eq!(keys_of(&report, task), keys.to_vec(), "{report}");
    assert!(fx.all_keys().await.is_empty());
}

#[tokio::test]
async fn garbage_in_the_saga_state_keeps_the_objects() {
    let fx = Fixture::new();
    for format in [Format::Json, Format::MessagePack, Format::Protobuf] {
        let task = TaskId::new();
        let payload = Payload::Encoded {
            format,
            bytes: Bytes::from_static(b"\xff\x00 not a saga state"),
        };
        fx.state.save(task, StoredState { fence: 1, payload }).await.unwrap();
        fx.objects_of(task, 2 * HOUR).await;
    }

    let report = fx
        .reconciler(Duration::ZERO)
        .with_task::<Stash>()
        .run(ReconcileMode::Delete)
        .await
        .unwrap();

    assert!(report.orphans.is_empty(), "{report}");
    assert_eq!(report.kept.unreadable, 6);
    assert_eq!(fx.all_keys().await.len(), 6);
}

#[tokio::test]
async fn the_task_is_judged_again_right_before_its_objects_are_deleted() {
    // The tracker does not know the task at the listing and knows it as
    // running at the re-check: its progress became visible in between.
    let store = Arc::new(AgedStore::default());
    let tracker = Arc::new(LateTracker::default());
    let task = TaskId::new();
    record_progress(&tracker.inner, task, TaskStatus::Running).await;
    let key = format!("{task}/Store/0000-a.txt");
    store.put_aged(BUCKET, &key, 2 * HOUR).await;
    let reconciler = Reconciler::new(store.clone(), tracker, Arc::new(MemoryStateStore::new())).with_buckets([BUCKET]);

    let report = reconciler.run(ReconcileMode::Delete).await.unwrap();

    assert!(report.orphans.is_empty(), "{report}");
    assert_eq!(report.kept.live, 1);
    assert_eq!(store.keys(BUCKET).await, [key]);
}

#[tokio::test]
async fn a_failed_deletion_is_reported_and_the_run_goes_on() {
    let fx = Fixture::new();
    let task = fx.record(TaskStatus::Failed).await;
    let [a, b] = fx.objects_of(task, 2 * HOUR).await;
    fx.store.refuse_delete.lock().unwrap().insert(a.clone());

    let report = fx.reconciler(HOUR).run(ReconcileMode::Delete).await.unwrap();

    assert_eq!(keys_of(&report, task), [b]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].orphan.key, a);
    assert!(
        report.failed[0].error.contains("delete refused"),
        "{}",
        report.failed[0].error
    );
    assert!(report.to_string().contains(&format!("failed to delete {BUCKET}/{a}")));
    assert_eq!(fx.all_keys().await, [a]);
}

#[tokio::test]
async fn a_reconciler_without_buckets_is_an_error() {
    let fx = Fixture::new();
    let reconciler = Reconciler::new(fx.store.clone(), fx.progress.clone(), fx.state.clone());
    let error = reconciler.run(ReconcileMode::DryRun).await.unwrap_err();
    assert!(matches!(error, Error::Invalid { .. }), "{error}");
}

// ---------------------------------------------------------------------------
// Real tasks.

#[tokio::test]
async fn objects_of_real_tasks_are_judged_by_how_they_ended() {
    let host = TestHost::new(Stash);
    let completed = host.run::<Stash>(StashRequest { fail: false }).await.unwrap();
    let compensated = host.run::<Stash>(StashRequest { fail: true }).await.unwrap();
    assert_eq!(completed.status(), TaskStatus::Completed);
    assert_eq!(compensated.status(), TaskStatus::Compensated);
    let (completed, compensated) = (completed.progress.task_id, compensated.progress.task_id);
    let infra = host.host().infrastructure();
    let listed = infra.storage.list(BUCKET, "").await.unwrap();
    assert_eq!(listed.len(), 2, "each task stored one object: {listed:?}");

    // Known by their progress.
    let reconciler = Reconciler::from_infrastructure(infra)
        .with_buckets([BUCKET])
        .with_grace(Duration::ZERO);
    let dry = reconciler.run(ReconcileMode::DryRun).await.unwrap();
    assert_eq!(
        orphans(&dry),
        [(
            BUCKET.to_owned(),
            format!("{compensated}/Store/blob"),
            compensated,
            OrphanReason::Ended(TaskStatus::Compensated)
        )]
    );
    assert_eq!(dry.kept.completed, 1);

    // Known only by their saga states (a tracker that forgot them).
    let forgetful = Reconciler::new(
        Arc::clone(&infra.storage),
        Arc::new(MemoryProgressTracker::new()),
        Arc::clone(&infra.state),
    )
    .with_buckets([BUCKET])
    .with_grace(Duration::ZERO);
    let report = forgetful.run(ReconcileMode::Delete).await.unwrap();
    assert_eq!(orphans(&report), orphans(&dry));
    assert_eq!(report.kept.completed, 1);

    let left = infra.storage.list(BUCKET, "").await.unwrap();
    let left: Vec<String> = left.into_iter().map(|m| m.key).collect();
    assert_eq!(left, [format!("{completed}/Store/blob")]);
    host.host().shutdown().await;
}

// ---------------------------------------------------------------------------
// The periodic run.

#[tokio::test(start_paused = true)]
async fn the_periodic_reconciler_deletes_every_period_until_shut_down() {
    let fx = Fixture::new();
    let first = TaskId::new();
    fx.objects_of(first, Duration::ZERO).await;
    let shutdown = CancellationToken::new();
    let every = Duration::from_secs(600);
    let handle = spawn_periodic(fx.reconciler(Duration::ZERO), every, shutdown.clone());

    // The first run starts at once; the paused clock advances only once
    // the runtime is idle, i.e. after the run.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(fx.all_keys().await.is_empty(), "the first run deleted the orphans");

    let second = TaskId::new();
    fx.objects_of(second, Duration::ZERO).await;
    tokio::time::sleep(every / 2).await;
    assert_eq!(fx.all_keys().await.len(), 2, "no run before the period is over");
    tokio::time::sleep(every).await;
    assert!(fx.all_keys().await.is_empty(), "the second run deleted the new orphans");

    shutdown.cancel();
    handle.await.expect("the reconciler task ends cleanly");
    let third = TaskId::new();
    fx.objects_of(third, Duration::ZERO).await;
    tokio::time::sleep(2 * every).await;
    assert_eq!(fx.all_keys().await.len(), 2, "no run after shutdown");
}

#[tokio::test]
async fn a_zero_period_disables_the_periodic_reconciler() {
    let fx = Fixture::new();
    fx.objects_of(TaskId::new(), Duration::ZERO).await;
    let handle = spawn_periodic(fx.reconciler(Duration::ZERO), Duration::ZERO, CancellationToken::new());
    handle.await.expect("ends at once");
    assert_eq!(fx.all_keys().await.len(), 2);
}
