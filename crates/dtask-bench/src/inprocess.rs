//! Section 2 of the issue: InProcess throughput and latency of the trivial
//! three-step task through `Host::submit`, on a runtime of 1 and of 2
//! worker threads, beside the raw baseline of one bounded tokio channel hop
//! per step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dtask::Host;
use tokio::sync::mpsc;

use crate::measure::{self, Outcome, Tracker};
use crate::stats;
use crate::table::{Row, Table};
use crate::task::{Ping, ThreeSteps};

const SECTION: &str = "2 InProcess";

/// The capacity of each baseline channel: the in-memory queue's default.
const CHANNEL_CAPACITY: usize = 100;

/// What the InProcess section runs.
#[derive(Debug, Clone)]
pub(crate) struct InProcessSettings {
    /// Tasks per throughput case.
    pub(crate) n: usize,
    /// Tasks of the one-at-a-time latency case.
    pub(crate) latency_n: usize,
    /// Tasks in flight (submitted, not yet ended) in the throughput cases.
    pub(crate) window: usize,
    /// Concurrent submit loops.
    pub(crate) submitters: usize,
    /// The host's worker concurrency.
    pub(crate) concurrency: usize,
    /// Runtimes to run on, by worker thread count.
    pub(crate) threads: Vec<usize>,
    /// How long one case may take.
    pub(crate) timeout: Duration,
    /// Runs per throughput case (the median is shown).
    pub(crate) repeat: usize,
}

/// Runs the section and adds its rows.
///
/// # Errors
/// A runtime that cannot be built, or a case that fails.
pub(crate) fn run(settings: &InProcessSettings, table: &mut Table) -> anyhow::Result<()> {
    for &threads in &settings.threads {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()?;
        let label = |what: &str| format!("{what}, {threads} thread{}", if threads == 1 { "" } else { "s" });
        eprintln!("InProcess, {threads} worker thread(s)");

        let (raw, raw_rates) = runtime.block_on(stats::repeat(settings.repeat, || channel_baseline(settings)))?;
        let mut row = outcome_row(&label("raw: 3 bounded tokio mpsc hops"), &raw);
        row.notes = join(&[
            format!("{} in flight, channel capacity {CHANNEL_CAPACITY}", settings.window),
            stats::spread(&raw_rates),
        ]);
        table.push(row);

        let last_rss = std::sync::Mutex::new(String::new());
        let rss_slot = &last_rss;
        let (flood, rates) = runtime.block_on(stats::repeat(settings.repeat, move || async move {
            let (outcome, memory) = dtask_case(settings, settings.n, settings.window).await?;
            // The first run's growth: later runs reuse what the allocator kept.
            let mut slot = rss_slot.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_empty() {
                *slot = memory;
            }
            anyhow::Ok(outcome)
        }))?;
        let rss = last_rss.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut row = outcome_row(&label("dtask 3-step, Host::submit"), &flood);
        row.vs_raw = Some(100.0 * flood.rate() / raw.rate());
        row.notes = join(&[
            format!(
                "{} in flight, {} submitter(s), concurrency {}",
                settings.window, settings.submitters, settings.concurrency
            ),
            stats::spread(&rates),
            rss,
            failures(&flood),
        ]);
        table.push(row);

        let one = InProcessSettings {
            submitters: 1,
            ..settings.clone()
        };
        let (single, _) = runtime.block_on(dtask_case(&one, settings.latency_n, 1))?;
        let mut row = outcome_row(&label("dtask 3-step, one at a time"), &single);
        row.notes = join(&["1 in flight: unloaded latency".to_owned(), failures(&single)]);
        table.push(row);
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
    Ok(())
}

/// A row of the measured rate and latencies.
pub(crate) fn outcome_row(case: &str, outcome: &Outcome) -> Row {
    let mut row = Row::new(SECTION, case);
    row.n = Some(outcome.completed + outcome.failed);
    row.rate = Some((outcome.rate(), "tasks/s"));
    row.p50 = outcome.percentile(0.5);
    row.p99 = outcome.percentile(0.99);
    row
}

/// "N FAILED (first submit error: ...)" when some did.
pub(crate) fn failures(outcome: &Outcome) -> String {
    match (outcome.failed, &outcome.first_error) {
        (0, _) => String::new(),
        (failed, Some(error)) => format!("{failed} FAILED (first submit error: {error})"),
        (failed, None) => format!("{failed} FAILED"),
    }
}

/// The non-empty parts, joined by "; ".
pub(crate) fn join(parts: &[String]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("; ")
}

/// Three stages joined by bounded channels: a "task" is an id that crosses
/// three hops, one per step.
async fn channel_baseline(settings: &InProcessSettings) -> anyhow::Result<Outcome> {
    let tracker = Tracker::new(settings.n, settings.window);
    let (first, mut first_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (second, mut second_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (third, mut third_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let stages = [
        tokio::spawn(async move {
            while let Some(id) = first_rx.recv().await {
                if second.send(id).await.is_err() {
                    break;
                }
            }
        }),
        tokio::spawn(async move {
            while let Some(id) = second_rx.recv().await {
                if third.send(id).await.is_err() {
                    break;
                }
            }
        }),
        tokio::spawn({
            let tracker = Arc::clone(&tracker);
            async move {
                while let Some(id) = third_rx.recv().await {
                    tracker.end(id, Instant::now(), true);
                }
            }
        }),
    ];
    let outcome = measure::drive(&tracker, settings.n, settings.submitters, settings.timeout, {
        move |id, _| {
            let first = first.clone();
            async move {
                first
                    .send(id)
                    .await
                    .map_err(|_| dtask::Error::invalid("baseline", "the first stage stopped"))
            }
        }
    })
    .await;
    for stage in stages {
        stage.abort();
    }
    outcome
}

/// `n` ThreeSteps tasks through a fresh InProcess host, `window` in flight;
/// returns the outcome and the resident memory it took.
async fn dtask_case(settings: &InProcessSettings, n: usize, window: usize) -> anyhow::Result<(Outcome, String)> {
    let before = stats::memory_kib(None, "VmRSS").unwrap_or_default();
    let tracker = Tracker::new(n, window);
    let host = Host::builder()
        .in_process()
        .register(ThreeSteps)
        .worker_concurrency(settings.concurrency)
        .on_event(tracker.listener())
        .build()?;
    let outcome = measure::drive(&tracker, n, settings.submitters, settings.timeout, {
        let host = host.clone();
        move |id, index| {
            let host = host.clone();
            async move { host.submit_with_id::<ThreeSteps>(id, Ping { n: index }).await.map(drop) }
        }
    })
    .await;
    let after = stats::memory_kib(None, "VmRSS").unwrap_or_default();
    host.shutdown().await;
    let rss = format!(
        "RSS {} after the first run (+{})",
        stats::mib(after),
        stats::mib(after.saturating_sub(before))
    );
    Ok((outcome?, rss))
}
