//! Section 7 of the table: dtask beside its peers, BullMQ (Node) and
//! apalis (Rust, apalis-redis), on the same Redis, one after the other in
//! one run, with the same N, worker concurrency and submitters, each with
//! its producer and workers in one process. Two loads:
//!
//! - **bulk**: N submitted at once (BullMQ `addBulk`, apalis `push_bulk`
//!   and dtask `Host::submit_many`, by 1000, one batch after the other),
//!   then drained;
//! - **window**: closed loop, a fixed number in flight (each submitter
//!   waits for a completion before the next submit).
//!
//! dtask runs its one-step task on Redis Streams with the Redis tracker,
//! lock and state store, as the Distributed section does: progress, lock
//! and a saga snapshot per task, which neither peer keeps. Its row gives
//! its rate as a ratio to each peer's.

mod apalis;
mod bullmq;

use std::time::Duration;

use crate::distributed::deploy::{Broker, Deployment, Endpoints};
use crate::distributed::{WARM_UP_TASKS, bulk_phase, phase};
use crate::inprocess::join;
use crate::measure::TrackerSlot;
use crate::stats;
use crate::table::{Row, Table};
use crate::task::Steps;

const SECTION: &str = "7 Peers";

/// What the peers section runs.
#[derive(Debug, Clone)]
pub(crate) struct PeersSettings {
    /// Tasks (jobs) per run.
    pub(crate) n: usize,
    /// In flight in the window load.
    pub(crate) window: usize,
    /// Concurrent submit loops (dtask, apalis).
    pub(crate) submitters: usize,
    /// Each side's worker concurrency.
    pub(crate) concurrency: usize,
    /// Where Redis is.
    pub(crate) endpoints: Endpoints,
    /// How long one run may take.
    pub(crate) timeout: Duration,
    /// Runs per case (the median is shown).
    pub(crate) repeat: usize,
}

/// How the tasks are offered.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Load {
    /// N submitted at once, then drained.
    Bulk,
    /// Closed loop with this many in flight.
    Window(usize),
}

impl Load {
    fn label(self) -> String {
        match self {
            Self::Bulk => "bulk (N at once, then drained)".to_owned(),
            Self::Window(window) => format!("window ({window} in flight)"),
        }
    }
}

/// One side's runs: their rates, or why they failed.
struct Measured {
    rates: Vec<f64>,
    errors: Vec<String>,
}

impl Measured {
    fn median(&self) -> Option<f64> {
        (!self.rates.is_empty()).then(|| stats::median(&self.rates))
    }

    fn notes(&self, what: String) -> String {
        let failed = match self.errors.first() {
            None => String::new(),
            Some(first) => format!("{} run(s) failed, first: {first}", self.errors.len()),
        };
        join(&[what, stats::spread(&self.rates), failed])
    }
}

/// Runs `run` `repeat` times and keeps each rate (tasks/s over `n`).
async fn measure<F, Fut>(repeat: usize, n: usize, mut run: F) -> Measured
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Duration>>,
{
    let mut measured = Measured {
        rates: Vec::new(),
        errors: Vec::new(),
    };
    for _ in 0..repeat.max(1) {
        match run().await {
            Ok(elapsed) => measured.rates.push(n as f64 / elapsed.as_secs_f64().max(1e-9)),
            Err(error) => {
                eprintln!("     a run failed: {error:#}");
                measured.errors.push(format!("{error:#}"));
            }
        }
    }
    measured
}

/// Runs the section and adds its rows.
///
/// # Errors
/// Redis that cannot be reached.
pub(crate) fn run(settings: &PeersSettings, table: &mut Table) -> anyhow::Result<()> {
    settings.endpoints.require(false, false)?;
    let bullmq = bullmq::prepare();
    if let Err(reason) = &bullmq {
        eprintln!("Peers: BullMQ skipped: {reason}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (n, redis) = (settings.n, settings.endpoints.redis_url.as_str());
        for load in [Load::Bulk, Load::Window(settings.window)] {
            eprintln!("Peers, {}", load.label());
            let dtask = measure(settings.repeat, n, || dtask_run(settings, load)).await;
            let bull = match &bullmq {
                Ok(_) => Some(
                    measure(settings.repeat, n, || {
                        bullmq::run(redis, (n, settings.concurrency), load, settings.timeout)
                    })
                    .await,
                ),
                Err(_) => None,
            };
            let shape = (n, settings.concurrency, settings.submitters);
            let apalis = measure(settings.repeat, n, || apalis::run(redis, shape, load, settings.timeout)).await;
            push_rows(settings, load, (&dtask, bull.as_ref(), &apalis), &bullmq, table);
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

fn push_rows(
    settings: &PeersSettings,
    load: Load,
    (dtask, bull, apalis): (&Measured, Option<&Measured>, &Measured),
    bullmq: &Result<String, String>,
    table: &mut Table,
) {
    let row = |case: String, measured: &Measured, notes: String| {
        let mut row = Row::new(SECTION, format!("Redis: {case}, {}", load.label()));
        row.n = Some(settings.n);
        row.rate = measured.median().map(|rate| (rate, "tasks/s"));
        row.notes = measured.notes(notes);
        row
    };
    let ratio = |peer: &str, measured: Option<&Measured>| match (dtask.median(), measured.and_then(Measured::median)) {
        (Some(ours), Some(theirs)) => format!("{:.2}x {peer}", ours / theirs),
        _ => String::new(),
    };
    let bull_name = match bullmq {
        Ok(version) => format!("BullMQ {version}"),
        Err(_) => "BullMQ".to_owned(),
    };
    let ratios = join(&[ratio(&bull_name, bull), ratio("apalis", Some(apalis))]);
    let concurrency = settings.concurrency;
    let submitters = format!("{} submitter loops", settings.submitters);
    table.push(row(
        "dtask one step, workers in-process".to_owned(),
        dtask,
        join(&[
            ratios,
            format!(
                "Redis Streams, concurrency {concurrency}, {}; progress, lock and snapshot per task",
                match load {
                    Load::Bulk => "Host::submit_many by 1000".to_owned(),
                    Load::Window(_) => submitters.clone(),
                }
            ),
        ]),
    ));
    match (bull, bullmq) {
        (Some(measured), _) => table.push(row(
            format!("{bull_name} (Node), producer and Worker in one process"),
            measured,
            format!("Worker concurrency {concurrency}; addBulk by 1000 or one add per job awaited; defaults (completed jobs kept)"),
        )),
        (None, Err(reason)) => {
            let mut skipped = Row::new(SECTION, format!("Redis: BullMQ, {}", load.label()));
            skipped.notes = format!("skipped: {reason}");
            table.push(skipped);
        }
        (None, Ok(_)) => {}
    }
    table.push(row(
        "apalis 1.0 (apalis-redis), producer and worker in one process".to_owned(),
        apalis,
        format!("concurrency {concurrency} (parallelize), batch size {concurrency}, {submitters}; push_bulk by 1000 or one push per job"),
    ));
}

/// dtask's one-step task on Redis Streams, workers in this process.
async fn dtask_run(settings: &PeersSettings, load: Load) -> anyhow::Result<Duration> {
    let deployment = Deployment::fresh(Broker::RedisStreams, &settings.endpoints, settings.concurrency);
    let slot = TrackerSlot::default();
    let host = deployment.host(settings.concurrency, true, slot.listener()).await?;
    let result = async {
        // Connections, streams and consumer groups exist before the clock starts.
        phase(&slot, &host, Steps::One, (WARM_UP_TASKS, 8, 4), Duration::from_secs(30)).await?;
        let outcome = match load {
            Load::Bulk => bulk_phase(&slot, &host, settings.n, settings.timeout).await?,
            Load::Window(window) => {
                let shape = (settings.n, window, settings.submitters);
                phase(&slot, &host, Steps::One, shape, settings.timeout).await?
            }
        };
        anyhow::ensure!(
            outcome.failed == 0,
            "{} tasks failed: {:?}",
            outcome.failed,
            outcome.first_error
        );
        anyhow::Ok(outcome.elapsed)
    }
    .await;
    host.shutdown().await;
    deployment.cleanup().await?;
    result
}
