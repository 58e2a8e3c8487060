//! The task history a host keeps: rows, attempts, conditions and the
//! audit log, read back; owner scoping; and what an outage of the history
//! does (nothing to the tasks; the history catches up and says what it
//! lost).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dtask::history::{AttemptKind, AttemptOutcome, HistoryPage, HistoryQuery, HistoryRecord, TaskHistoryDetail};
use dtask::infra::TaskHistory;
use dtask::memory::MemoryTaskHistory;
use dtask::testing::TestHost;
use dtask::{HistorySettings, Principal, TaskId, TaskStatus};
use support::{Journal, OrderRequest, PlaceOrder, Transcode, VideoRequest};
use time::OffsetDateTime;

const PATIENCE: Duration = Duration::from_secs(10);

fn video_host() -> TestHost {
    TestHost::with(|b| {
        b.register(Transcode::new(Journal::default()))
            .history(MemoryTaskHistory::new())
            .node_name("node-a")
    })
}

async fn detail(host: &TestHost, task_id: TaskId) -> TaskHistoryDetail {
    tokio::time::timeout(PATIENCE, host.host().flush_history())
        .await
        .expect("the history is written");
    host.host()
        .task_history(task_id)
        .await
        .unwrap()
        .expect("the task is in the history")
}

#[tokio::test]
async fn the_audit_log_reads_back_every_change_in_order_with_actor_and_trace_id() {
    let host = video_host();
    let alice = host.host().caller(Principal::new("alice", Vec::<String>::new()));
    let handle = alice
        .submit::<Transcode>(VideoRequest {
            height: 1080,
            fail_1080: false,
        })
        .await
        .unwrap();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);
    let history = detail(&host, handle.id()).await;

    let trace_id = outcome
        .progress
        .trace_id
        .clone()
        .expect("a task gets a trace id at submit");
    assert_eq!(trace_id.len(), 32);
    assert!(
        trace_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert!(
        history
            .audit
            .iter()
            .all(|e| e.trace_id.as_deref() == Some(trace_id.as_str()))
    );

    // The oracle: the events the host told its listeners, named as their
    // JSON form names them (serde's tag), progress reports left out.
    let expected: Vec<String> = host
        .events(handle.id())
        .iter()
        .map(|e| {
            serde_json::to_value(&e.kind).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .filter(|action| action != "stepProgress" && action != "submitted")
        .collect();
    let actions: Vec<&str> = history.audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions[0], "submit");
    assert_eq!(
        actions[1..],
        expected.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_eq!(history.audit[0].actor, "alice", "the submitter submitted it");
    assert!(
        history.audit[1..].iter().all(|e| e.actor == "system:node-a"),
        "the process ran the rest"
    );
    let skipped = history.audit.iter().find(|e| e.action == "stepSkipped").unwrap();
    assert_eq!(skipped.step.as_deref(), Some("Transcode2160"));
    assert_eq!(
        (skipped.before.as_deref(), skipped.after.as_deref()),
        (Some("pending"), Some("skipped"))
    );
    let times: Vec<OffsetDateTime> = history.audit.iter().map(|e| e.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");

    let conditions: Vec<_> = history
        .conditions
        .iter()
        .map(|c| (c.step.as_str(), c.snapshot.holds))
        .collect();
    assert_eq!(conditions, [("Transcode2160", false)]);
    assert_eq!(
        history.conditions[0].snapshot.observed[0].value, "1080",
        "the value it saw"
    );

    let ran: Vec<_> = history
        .attempts
        .iter()
        .map(|a| (a.step.as_str(), a.attempt, a.outcome))
        .collect();
    assert_eq!(ran.len(), 4, "{ran:?}");
    for step in ["Probe", "Transcode720", "Transcode1080", "Publish"] {
        assert!(
            ran.contains(&(step, 1, Some(AttemptOutcome::Succeeded))),
            "{step}: {ran:?}"
        );
    }
    assert!(
        history
            .attempts
            .iter()
            .all(|a| a.worker == "node-a" && a.ended_at >= a.started_at)
    );

    let row = &history.task;
    assert_eq!(row.progress, outcome.progress, "the row shows the final saved progress");
    assert_eq!(row.version, 1);
    assert!(row.deadline.unwrap() > row.progress.created_at);
    let summary = row.response_summary.as_deref().unwrap();
    let response: serde_json::Value = serde_json::from_str(summary).unwrap();
    assert_eq!(response["renditions"].as_array().unwrap().len(), 2, "{summary}");
}

#[tokio::test]
async fn retries_and_compensations_are_attempt_rows() {
    let host = TestHost::with(|b| b.register(PlaceOrder::default()).history(MemoryTaskHistory::new()));
    let outcome = host
        .run::<PlaceOrder>(OrderRequest {
            item: "book".into(),
            charge_failures: 2,
            ship_fails: true,
        })
        .await
        .unwrap();
    assert_eq!(outcome.status(), TaskStatus::Compensated);
    let history = detail(&host, outcome.progress.task_id).await;
    let rows: Vec<_> = (history.attempts.iter())
        .map(|a| (a.step.as_str(), a.kind, a.attempt, a.outcome, a.error.is_some()))
        .collect();
    use AttemptKind::{Compensation, Run};
    use AttemptOutcome::{Failed, Succeeded};
    assert_eq!(
        rows,
        [
            ("Reserve", Run, 1, Some(Succeeded), false),
            ("Charge", Run, 1, Some(Failed), true),
            ("Charge", Run, 2, Some(Failed), true),
            ("Charge", Run, 3, Some(Succeeded), false),
            ("Ship", Run, 1, Some(Failed), true),
            ("Charge", Compensation, 1, Some(Succeeded), false),
            ("Reserve", Compensation, 1, Some(Succeeded), false),
        ]
    );
    let failed = &history.attempts[1];
    assert_eq!(failed.error.as_deref(), Some("card declined (attempt 1)"));
    let last = history.audit.last().unwrap();
    assert_eq!(last.action, "compensated");
    assert_eq!(
        (last.before.as_deref(), last.after.as_deref()),
        (Some("compensating"), Some("compensated"))
    );
    assert!(last.detail.as_deref().unwrap().contains("no courier"));
}

#[tokio::test]
async fn callers_read_only_their_own_history_and_operators_all() {
    let host = video_host();
    let request = || VideoRequest {
        height: 720,
        fail_1080: false,
    };
    let alice = host.host().caller(Principal::new("alice", Vec::<String>::new()));
    let bob = host.host().caller(Principal::new("bob", Vec::<String>::new()));
    let operator = host
        .host()
        .caller(Principal::new("ops", [host.host().operator_role().to_owned()]));
    let mine = alice.submit::<Transcode>(request()).await.unwrap();
    let theirs = bob.submit::<Transcode>(request()).await.unwrap();
    mine.wait().await.unwrap();
    theirs.wait().await.unwrap();
    host.host().flush_history().await;

    let ids = |page: HistoryPage| page.items.iter().map(|r| r.progress.task_id).collect::<Vec<_>>();
    let all = HistoryQuery::default();
    assert_eq!(ids(alice.history_list(&all).await.unwrap()), [mine.id()]);
    assert_eq!(ids(bob.history_list(&all).await.unwrap()), [theirs.id()]);
    assert_eq!(
        ids(operator.history_list(&all).await.unwrap()),
        [theirs.id(), mine.id()],
        "newest first"
    );
    let spoofed = HistoryQuery {
        submitter: Some("bob".into()),
        ..HistoryQuery::default()
    };
    assert!(
        alice.history_list(&spoofed).await.unwrap().items.is_empty(),
        "a filter cannot widen the scope"
    );
    assert!(
        alice.task_history(theirs.id()).await.unwrap().is_none(),
        "someone else's task does not exist"
    );
    assert!(operator.task_history(mine.id()).await.unwrap().is_some());
    alice.cancel(mine.id()).await.unwrap();
    let cancel = detail(&host, mine.id()).await.audit.pop().unwrap();
    assert_eq!((cancel.action.as_str(), cancel.actor.as_str()), ("cancel", "alice"));
    assert_eq!(
        cancel.detail.as_deref(),
        Some("refused: the task already ended completed")
    );
}

/// A history that fails every write while `down` is set.
#[derive(Debug, Default)]
struct Flaky {
    inner: MemoryTaskHistory,
    down: AtomicBool,
}

#[async_trait]
impl TaskHistory for Flaky {
    async fn write(&self, batch: &[HistoryRecord]) -> dtask::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(dtask::Error::backend("flaky", std::io::Error::other("history down")));
        }
        self.inner.write(batch).await
    }
    async fn list(&self, query: &HistoryQuery) -> dtask::Result<HistoryPage> {
        self.inner.list(query).await
    }
    async fn task(&self, task_id: TaskId) -> dtask::Result<Option<TaskHistoryDetail>> {
        self.inner.task(task_id).await
    }
    async fn purge(&self, ended_before: OffsetDateTime, limit: usize) -> dtask::Result<usize> {
        self.inner.purge(ended_before, limit).await
    }
}

fn flaky_host(flaky: &Arc<Flaky>, buffer: usize) -> TestHost {
    let settings = HistorySettings {
        buffer,
        ..HistorySettings::default()
    };
    let history: Arc<dyn TaskHistory> = Arc::clone(flaky) as _;
    TestHost::with(|b| b.register(PlaceOrder::default()).history_with(history, settings))
}

fn order() -> OrderRequest {
    OrderRequest {
        item: "lamp".into(),
        charge_failures: 0,
        ship_fails: false,
    }
}

#[tokio::test]
async fn an_outage_of_the_history_delays_it_and_never_a_task() {
    let flaky = Arc::new(Flaky::default());
    flaky.down.store(true, Ordering::SeqCst);
    let host = flaky_host(&flaky, 10_000);
    let outcome = tokio::time::timeout(PATIENCE, host.run::<PlaceOrder>(order()))
        .await
        .expect("the task does not wait for the history")
        .unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);
    let task_id = outcome.progress.task_id;
    assert!(
        flaky.inner.task(task_id).await.unwrap().is_none(),
        "nothing written while down"
    );

    flaky.down.store(false, Ordering::SeqCst);
    let history = detail(&host, task_id).await;
    assert_eq!(history.task.progress, outcome.progress, "caught up to the final row");
    assert_eq!(history.attempts.len(), 3);
    assert_eq!(history.audit.last().unwrap().action, "completed");
    assert!(
        history.audit.iter().all(|e| e.action != "historyGap"),
        "nothing was lost"
    );
}

#[tokio::test]
async fn records_dropped_to_a_full_buffer_leave_a_gap_entry_and_the_final_row() {
    let flaky = Arc::new(Flaky::default());
    flaky.down.store(true, Ordering::SeqCst);
    let host = flaky_host(&flaky, 4);
    let outcome = host.run::<PlaceOrder>(order()).await.unwrap();
    let task_id = outcome.progress.task_id;
    flaky.down.store(false, Ordering::SeqCst);
    let history = detail(&host, task_id).await;
    assert_eq!(
        history.task.progress, outcome.progress,
        "the row is never dropped: it shows the end"
    );
    let gap = history
        .audit
        .iter()
        .find(|e| e.action == "historyGap")
        .expect("the gap is told");
    assert!(gap.detail.as_deref().unwrap().contains("dropped"), "{gap:?}");
    let kept = history.audit.iter().filter(|e| e.action != "historyGap").count();
    assert!(
        kept < 9,
        "of the 9 entries of a PlaceOrder, some were dropped: {kept} kept"
    );
}
