//! The history writer: takes the records the kernel makes as events happen
//! and writes them to the host's [`TaskHistory`] in batches, in a task of
//! its own, so that no step ever waits for the history.
//!
//! While the history cannot be written the records wait in memory (a task's
//! row is kept once, the newest), and the writer tries again with backoff;
//! when it succeeds it says how long it was behind. Past
//! [`HistorySettings::buffer`] waiting records the newest are dropped and
//! the tasks that lost records get a `historyGap` audit entry once the
//! history is back: the history then says what it does not know. Tasks
//! themselves never depend on it: the saga state store is their record.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::history::{AuditEntry, HistoryRecord, TaskRecord};
use crate::id::TaskId;
use crate::infra::TaskHistory;

mod records;

pub(crate) use records::{Before, RunHistory};

/// How a host writes and keeps its task history.
#[derive(Debug, Clone)]
pub struct HistorySettings {
    /// How long the history of an ended task is kept (default 30 days).
    pub retention: Duration,
    /// How often ended tasks older than the retention are purged (default
    /// hourly; the first purge runs when the host starts).
    pub purge_interval: Duration,
    /// How many tasks one purge statement deletes (default 1,000).
    pub purge_batch: usize,
    /// The most records written in one batch (default 500).
    pub batch: usize,
    /// The most records waiting for the history while it cannot be written
    /// (default 100,000); past it, new records are dropped and their tasks
    /// marked with a `historyGap` audit entry.
    pub buffer: usize,
    /// How long [`Host::shutdown`](crate::Host::shutdown) waits for the
    /// records still waiting to be written (default 10 s).
    pub shutdown_wait: Duration,
}

impl Default for HistorySettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            purge_interval: Duration::from_secs(3600),
            purge_batch: 1000,
            batch: 500,
            buffer: 100_000,
            shutdown_wait: Duration::from_secs(10),
        }
    }
}

/// The host's handle on its history writer; dropping it lets the writer
/// drain and stop.
pub(crate) struct HistoryWriter {
    shared: Arc<Shared>,
    /// Fires to make the writer drain what waits and stop.
    closing: CancellationToken,
    /// Fires to make it stop at once, dropping what waits.
    abandon: CancellationToken,
    tracker: TaskTracker,
}

struct Shared {
    history: Arc<dyn TaskHistory>,
    settings: HistorySettings,
    waiting: Mutex<Waiting>,
    wake: Notify,
    /// How many records pushed so far are settled (written, replaced by a
    /// newer row of their task, or dropped).
    settled: watch::Sender<u64>,
}

#[derive(Default)]
struct Waiting {
    /// The newest row of each task waiting.
    tasks: HashMap<TaskId, TaskRecord>,
    /// Every other record, in order.
    log: VecDeque<HistoryRecord>,
    /// Records pushed so far.
    pushed: u64,
    /// Records settled so far.
    settled: u64,
    /// Tasks that lost records to a full buffer, with how many.
    gaps: HashMap<TaskId, u64>,
    /// The `historyGap` entries waiting, with the dropped records each
    /// stands for: those are settled when it is written.
    gap_entries: HashMap<Uuid, u64>,
}

impl Waiting {
    fn len(&self) -> usize {
        self.tasks.len() + self.log.len()
    }

    /// How many pushed records `batch`, just written, settles.
    fn settles(&mut self, batch: &[HistoryRecord]) -> u64 {
        batch
            .iter()
            .map(|record| match record {
                HistoryRecord::Audit(entry) => self.gap_entries.remove(&entry.id).unwrap_or(1),
                _ => 1,
            })
            .sum()
    }

    /// Takes up to `max` records: the rows first, then the log in order.
    fn take(&mut self, max: usize) -> Vec<HistoryRecord> {
        let mut batch = Vec::with_capacity(self.len().min(max));
        let ids: Vec<TaskId> = self.tasks.keys().take(max).copied().collect();
        for id in ids {
            if let Some(row) = self.tasks.remove(&id) {
                batch.push(HistoryRecord::Task(row));
            }
        }
        let rest = (max - batch.len()).min(self.log.len());
        batch.extend(self.log.drain(..rest));
        batch
    }

    /// Puts back a batch that could not be written, ahead of what came
    /// since (a row newer than it wins).
    fn put_back(&mut self, batch: Vec<HistoryRecord>) {
        let mut log = Vec::new();
        for record in batch {
            match record {
                HistoryRecord::Task(row) => {
                    if let Some(newer) = self.tasks.get(&row.progress.task_id)
                        && newer.progress.revision >= row.progress.revision
                    {
                        self.settled += 1;
                        continue;
                    }
                    self.tasks.insert(row.progress.task_id, row);
                }
                other => log.push(other),
            }
        }
        for record in log.into_iter().rev() {
            self.log.push_front(record);
        }
    }
}

impl HistoryWriter {
    /// Starts the writer (and the purge of expired history) on the current
    /// tokio runtime.
    pub(crate) fn spawn(history: Arc<dyn TaskHistory>, settings: HistorySettings) -> Self {
        let shared = Arc::new(Shared {
            history,
            settings,
            waiting: Mutex::new(Waiting::default()),
            wake: Notify::new(),
            settled: watch::channel(0).0,
        });
        let closing = CancellationToken::new();
        let abandon = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(write_loop(Arc::clone(&shared), closing.clone(), abandon.clone()));
        tracker.spawn(purge_loop(Arc::clone(&shared), closing.clone()));
        tracker.close();
        Self {
            shared,
            closing,
            abandon,
            tracker,
        }
    }

    /// The history written to.
    pub(crate) fn history(&self) -> &Arc<dyn TaskHistory> {
        &self.shared.history
    }

    /// Queues `record` for the history; never waits.
    pub(crate) fn push(&self, record: HistoryRecord) {
        let shared = &self.shared;
        {
            let mut waiting = shared.lock();
            waiting.pushed += 1;
            match record {
                HistoryRecord::Task(row) => {
                    let task_id = row.progress.task_id;
                    match waiting.tasks.get(&task_id) {
                        Some(queued) if queued.progress.revision >= row.progress.revision => waiting.settled += 1,
                        Some(_) => {
                            waiting.tasks.insert(task_id, row);
                            waiting.settled += 1;
                        }
                        None if waiting.len() >= shared.settings.buffer => drop_record(&mut waiting, task_id),
                        None => {
                            waiting.tasks.insert(task_id, row);
                        }
                    }
                }
                other if waiting.len() >= shared.settings.buffer => drop_record(&mut waiting, other.task_id()),
                other => waiting.log.push_back(other),
            }
            shared.settled.send_replace(waiting.settled);
        }
        shared.wake.notify_one();
    }

    /// Waits until every record pushed before the call is written (or
    /// dropped to a full buffer).
    pub(crate) async fn flush(&self) {
        let target = self.shared.lock().pushed;
        let mut settled = self.shared.settled.subscribe();
        tokio::select! {
            // The sender lives in `shared`, which outlives this borrow.
            _ = settled.wait_for(|done| *done >= target) => {}
            () = self.abandon.cancelled() => {}
        }
    }

    /// Drains what waits, for at most [`HistorySettings::shutdown_wait`],
    /// and stops the writer.
    pub(crate) async fn close(&self) {
        self.closing.cancel();
        let wait = self.shared.settings.shutdown_wait;
        if tokio::time::timeout(wait, self.tracker.wait()).await.is_err() {
            let lost = self.shared.lock().len();
            tracing::warn!(
                records = lost,
                "the task history could not be written before shutdown: these records are lost to it (the tasks are not)"
            );
        }
        self.abandon.cancel();
    }
}

impl Drop for HistoryWriter {
    /// A host dropped without [`Host::shutdown`](crate::Host::shutdown)
    /// stops its writer and its purges at once.
    fn drop(&mut self) {
        self.closing.cancel();
        self.abandon.cancel();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `batch` is written: settles its records, and queues a `historyGap`
    /// entry for each task that lost records meanwhile.
    fn written(&self, batch: &[HistoryRecord]) {
        let mut waiting = self.lock();
        let settled = waiting.settles(batch);
        waiting.settled += settled;
        self.settled.send_replace(waiting.settled);
        if waiting.gaps.is_empty() {
            return;
        }
        let gaps = std::mem::take(&mut waiting.gaps);
        tracing::warn!(
            tasks = gaps.len(),
            "the task history lost records of some tasks while it could not be written; each is marked with a historyGap entry"
        );
        for (task_id, lost) in gaps {
            let mut entry = AuditEntry::new(task_id, "system", "historyGap");
            entry.detail = Some(format!(
                "{lost} records of this task were dropped while the history could not be written; its row shows its latest saved progress"
            ));
            waiting.gap_entries.insert(entry.id, lost);
            waiting.log.push_back(HistoryRecord::Audit(entry));
        }
        drop(waiting);
        self.wake.notify_one();
    }
}

/// Drops a record to a full buffer. It is settled when the `historyGap`
/// entry that tells of it is written.
fn drop_record(waiting: &mut Waiting, task_id: TaskId) {
    *waiting.gaps.entry(task_id).or_default() += 1;
}

/// The first pause after a failed write, doubled after each failure up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

async fn write_loop(shared: Arc<Shared>, closing: CancellationToken, abandon: CancellationToken) {
    let mut failed_since: Option<(OffsetDateTime, u32)> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let batch = shared.lock().take(shared.settings.batch);
        if batch.is_empty() {
            if closing.is_cancelled() {
                return;
            }
            tokio::select! {
                () = shared.wake.notified() => {}
                () = closing.cancelled() => {}
            }
            continue;
        }
        let written = tokio::select! {
            written = shared.history.write(&batch) => written,
            () = abandon.cancelled() => return,
        };
        match written {
            Ok(()) => {
                shared.written(&batch);
                if let Some((since, failures)) = failed_since.take() {
                    let behind = OffsetDateTime::now_utc() - since;
                    tracing::info!(
                        failures,
                        behind_ms = behind.whole_milliseconds() as u64,
                        "the task history is being written again; the records that waited follow"
                    );
                    backoff = FIRST_BACKOFF;
                }
            }
            Err(error) => {
                let (_, failures) = failed_since.get_or_insert((OffsetDateTime::now_utc(), 0));
                *failures += 1;
                if *failures == 1 {
                    tracing::warn!(%error, "could not write the task history; its records wait and are written when it is back");
                }
                {
                    let mut waiting = shared.lock();
                    waiting.put_back(batch);
                    shared.settled.send_replace(waiting.settled);
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = abandon.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn purge_loop(shared: Arc<Shared>, closing: CancellationToken) {
    let settings = &shared.settings;
    let mut ticks = tokio::time::interval(settings.purge_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = closing.cancelled() => return,
        }
        let Ok(retention) = time::Duration::try_from(settings.retention) else {
            continue;
        };
        let before = OffsetDateTime::now_utc() - retention;
        let mut purged = 0;
        loop {
            match shared.history.purge(before, settings.purge_batch).await {
                Ok(n) => {
                    purged += n;
                    if n < settings.purge_batch {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not purge the expired task history; the next purge tries again");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(purged, "purged the history of tasks ended before the retention");
        }
    }
}
