//! Section 3 of the issue: Distributed throughput and latency of the
//! trivial tasks through Redis Streams, RabbitMQ and PostgreSQL, with
//! workers in the submitting process and in separate processes, beside the
//! raw broker baselines, with the Redis commands (or PostgreSQL
//! transactions) one task costs.

mod commandstats;
pub(crate) mod deploy;
mod monitor;
mod raw_amqp;
mod raw_pg;
mod raw_redis;
pub(crate) mod worker;

use std::time::Duration;

use dtask::Host;
use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};

use self::commandstats::Counter;
use self::deploy::{Broker, Deployment, Endpoints};
use self::monitor::Monitor;
use self::worker::WorkerProcesses;
use crate::inprocess::{failures, join};
use crate::measure::{self, Outcome, Tracker, TrackerSlot};
use crate::stats;
use crate::table::{Row, Table};
use crate::task::{OneStep, Ping, Steps, ThreeSteps};

const SECTION: &str = "3 Distributed";

/// What the Distributed section runs.
#[derive(Debug, Clone)]
pub(crate) struct DistributedSettings {
    /// Tasks (and raw messages) per case.
    pub(crate) n: usize,
    /// Tasks in flight.
    pub(crate) window: usize,
    /// Concurrent submit loops.
    pub(crate) submitters: usize,
    /// Each worker's concurrency (and RabbitMQ prefetch).
    pub(crate) concurrency: usize,
    /// The brokers to run through.
    pub(crate) brokers: Vec<Broker>,
    /// Worker processes of the separate-process cases (0: none).
    pub(crate) worker_processes: usize,
    /// Where the services are.
    pub(crate) endpoints: Endpoints,
    /// How long one case may take.
    pub(crate) timeout: Duration,
    /// Keep each case's Redis keys and queues (for inspection).
    pub(crate) keep: bool,
    /// Runs per case (the median is shown).
    pub(crate) repeat: usize,
}

/// Runs the section and adds its rows.
///
/// # Errors
/// A service that cannot be reached (named, with a hint), or a case that
/// fails.
pub(crate) fn run(settings: &DistributedSettings, table: &mut Table) -> anyhow::Result<()> {
    settings.endpoints.require(
        settings.brokers.contains(&Broker::Rabbitmq),
        settings.brokers.contains(&Broker::Postgres),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for &broker in &settings.brokers {
            eprintln!("Distributed, {}", broker.label());
            let raw = raw_baselines(settings, broker, table).await?;
            let mut placements = vec![0];
            if settings.worker_processes > 0 {
                placements.push(settings.worker_processes);
            }
            for processes in placements {
                for steps in [Steps::One, Steps::Three] {
                    dtask_case(settings, broker, steps, processes, raw, table).await?;
                }
            }
        }
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// Runs the raw baselines of `broker`; returns the rate the dtask cases
/// are compared with (messages per second).
async fn raw_baselines(settings: &DistributedSettings, broker: Broker, table: &mut Table) -> anyhow::Result<f64> {
    let n = settings.n;
    let rate = |elapsed: Duration| n as f64 / elapsed.as_secs_f64().max(1e-9);
    match broker {
        Broker::RedisStreams => {
            let client = redis::Client::open(settings.endpoints.redis_url.as_str())?;
            let prefix = format!("dtask-bench:raw-{}:", uuid::Uuid::new_v4().simple());
            let mut base = 0.0;
            for (case, batch, count) in [
                ("raw XADD, XREADGROUP 100, XACK+XDEL, awaited", 1, 100),
                ("raw XADD, XREADGROUP, XACK+XDEL, pipelined by 1000", 1000, 1000),
            ] {
                let mut rates = Vec::new();
                let mut round_trips = 0;
                for _ in 0..settings.repeat.max(1) {
                    let run = raw_redis::run(&client, &prefix, n, batch, count).await?;
                    rates.push(rate(run.elapsed));
                    round_trips = run.round_trips;
                }
                let median = stats::median(&rates);
                let mut row = Row::new(SECTION, format!("{}: {case}", broker.label()));
                row.n = Some(n);
                row.rate = Some((median, "msg/s"));
                let mut notes = vec![
                    format!("{:.3} round trips/msg", round_trips as f64 / n as f64),
                    stats::spread(&rates),
                ];
                if batch > 1 {
                    // What Redis Streams can carry: the dtask rows' "vs raw".
                    base = median;
                    notes.push("the baseline of the ratios below".to_owned());
                }
                row.notes = join(&notes);
                table.push(row);
            }
            Ok(base)
        }
        Broker::Rabbitmq => {
            let url = &settings.endpoints.amqp_url;
            let amqp = AmqpQueue::connect(AmqpConfig::new(url.clone())).await?;
            let connection = lapin::Connection::connect(url.as_str(), lapin::ConnectionProperties::default()).await?;
            let prefetch = u16::try_from(settings.concurrency.max(1)).unwrap_or(u16::MAX);
            let mut base = 0.0;
            for (case, topology) in [
                ("quorum queue (AmqpQueue's topology)", raw_amqp::Topology::Quorum),
                ("durable classic queue", raw_amqp::Topology::Classic),
            ] {
                let mut rates = Vec::new();
                for _ in 0..settings.repeat.max(1) {
                    let queue = format!("dtask-bench-raw-{}", uuid::Uuid::new_v4().simple());
                    let elapsed = raw_amqp::run(&connection, &amqp, &queue, topology, n, prefetch).await?;
                    rates.push(rate(elapsed));
                }
                let median = stats::median(&rates);
                let mut row = Row::new(
                    SECTION,
                    format!("{}: raw lapin publish+consume+ack, {case}", broker.label()),
                );
                row.n = Some(n);
                row.rate = Some((median, "msg/s"));
                let mut notes = vec![
                    format!(
                        "persistent, confirms awaited every {}, prefetch {prefetch}",
                        raw_amqp::CONFIRM_BATCH
                    ),
                    stats::spread(&rates),
                ];
                if topology == raw_amqp::Topology::Quorum {
                    base = median;
                    notes.push("the baseline of the ratios below".to_owned());
                }
                row.notes = join(&notes);
                table.push(row);
            }
            connection.close(200, "done".into()).await?;
            Ok(base)
        }
        Broker::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(u32::try_from(2 * raw_pg::WORKERS).unwrap_or(16))
                .connect(&settings.endpoints.database_url)
                .await?;
            let mut rates = Vec::new();
            let mut commits = 0;
            for _ in 0..settings.repeat.max(1) {
                let before = raw_pg::commits(&pool).await?;
                rates.push(rate(raw_pg::run(&pool, n).await?));
                tokio::time::sleep(STATS_FLUSH).await;
                commits = raw_pg::commits(&pool).await? - before;
            }
            let median = stats::median(&rates);
            let mut row = Row::new(
                SECTION,
                format!("{}: raw INSERT + DELETE ... FOR UPDATE SKIP LOCKED", broker.label()),
            );
            row.n = Some(n);
            row.rate = Some((median, "msg/s"));
            row.notes = join(&[
                format!(
                    "{} producers, {} consumers, one row per transaction; {:.1} transactions/msg",
                    raw_pg::WORKERS,
                    raw_pg::WORKERS,
                    commits as f64 / n as f64
                ),
                stats::spread(&rates),
                "the baseline of the ratios below".to_owned(),
            ]);
            table.push(row);
            pool.close().await;
            Ok(median)
        }
    }
}

/// How long PostgreSQL may take to publish a backend's transaction counts.
const STATS_FLUSH: Duration = Duration::from_millis(1500);

/// `settings.n` tasks of `steps` through `broker`, workers in this process
/// (`processes` 0) or in `processes` separate ones.
async fn dtask_case(
    settings: &DistributedSettings,
    broker: Broker,
    steps: Steps,
    processes: usize,
    raw_rate: f64,
    table: &mut Table,
) -> anyhow::Result<()> {
    let placement = match processes {
        0 => "workers in-process".to_owned(),
        1 => "1 worker process".to_owned(),
        k => format!("{k} worker processes"),
    };
    let case = format!("{}: dtask {}, {placement}", broker.label(), steps.label());
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    // A repetition that fails is tried again, up to `repeat` extra tries in all.
    let tries = 2 * settings.repeat.max(1);
    for _ in 0..tries {
        if runs.len() == settings.repeat.max(1) {
            break;
        }
        let deployment = Deployment::fresh(broker, &settings.endpoints, settings.concurrency);
        let result = measured_run(settings, &deployment, steps, processes).await;
        if settings.keep {
            eprintln!(
                "kept the keys under {} and the queue {}",
                deployment.key_prefix,
                deployment.queue_name()
            );
        } else if let Err(error) = deployment.cleanup().await {
            eprintln!("cleaning up {} failed: {error:#}", deployment.namespace);
        }
        match result {
            Ok(run) => runs.push(run),
            Err(error) => {
                let error = format!("{error:#} (keys under {})", deployment.key_prefix);
                eprintln!("     {case}: a run failed: {error}");
                errors.push(error);
            }
        }
    }
    if runs.is_empty() {
        let mut row = Row::new(SECTION, case);
        row.notes = format!("FAILED: {}", errors.join("; "));
        table.push(row);
        return Ok(());
    }
    let rates: Vec<f64> = runs.iter().map(|(outcome, _)| outcome.rate()).collect();
    runs.sort_by(|a, b| a.0.rate().total_cmp(&b.0.rate()));
    let middle = runs.len() / 2;
    let (outcome, notes) = runs.swap_remove(middle);
    let retried = match errors.len() {
        0 => String::new(),
        k => format!("{k} failed run(s) retried, first: {}", errors[0]),
    };
    let notes = join(&[stats::spread(&rates), notes, retried]);
    let mut row = Row::new(SECTION, case);
    row.n = Some(outcome.completed + outcome.failed);
    row.rate = Some((outcome.rate(), "tasks/s"));
    row.p50 = outcome.percentile(0.5);
    row.p99 = outcome.percentile(0.99);
    row.vs_raw = Some(100.0 * outcome.rate() / raw_rate);
    row.notes = notes;
    table.push(row);
    Ok(())
}

async fn measured_run(
    settings: &DistributedSettings,
    deployment: &Deployment,
    steps: Steps,
    processes: usize,
) -> anyhow::Result<(Outcome, String)> {
    let slot = TrackerSlot::default();
    let (host, workers) = if processes == 0 {
        let host = deployment.host(settings.concurrency, true, slot.listener()).await?;
        (host, None)
    } else {
        let host = deployment.host(settings.concurrency, false, |_| {}).await?;
        let workers = WorkerProcesses::spawn(deployment, processes, settings.concurrency, &slot).await?;
        (host, Some(workers))
    };
    let result = async {
        let phase = |n: usize, window: usize, submitters: usize, timeout: Duration| {
            phase(&slot, &host, steps, (n, window, submitters), timeout)
        };
        let short = Duration::from_secs(30);
        // Warm-up: connections, queues and consumer groups exist before the clock starts.
        let warm_up = phase(WARM_UP_TASKS, 8, 4, short).await?;
        if warm_up.failed > 0 {
            eprintln!("     warm-up: {}", failures(&warm_up));
        }
        let mut notes = vec![format!(
            "{} in flight, concurrency {}",
            settings.window, settings.concurrency
        )];
        let (outcome, counted_run) = if deployment.broker.uses_redis() {
            let client = redis::Client::open(settings.endpoints.redis_url.as_str())?;
            let monitor = Monitor::start(&client, &deployment.key_prefix).await?;
            let counted_run = phase(COUNTED_TASKS, 16, 4, short).await?;
            let counted = monitor.finish().await;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let counter = Counter::start(&mut conn, Duration::from_millis(500)).await?;
            let outcome = phase(settings.n, settings.window, settings.submitters, settings.timeout).await?;
            // The last tasks' final writes and acks follow their Completed event.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let commands = counter.finish(&mut conn, settings.n).await?;
            eprintln!(
                "     Redis, per task: {}; server-side {}",
                counted.summary(COUNTED_TASKS, usize::MAX),
                commands.summary(usize::MAX)
            );
            notes.push(counted.summary(COUNTED_TASKS, 4));
            notes.push(format!("server: {}", commands.summary(3)));
            (outcome, counted_run)
        } else {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&settings.endpoints.database_url)
                .await?;
            let counted_run = phase(COUNTED_TASKS, 16, 4, short).await?;
            let before = raw_pg::commits(&pool).await?;
            let outcome = phase(settings.n, settings.window, settings.submitters, settings.timeout).await?;
            tokio::time::sleep(STATS_FLUSH).await;
            let commits = raw_pg::commits(&pool).await? - before;
            pool.close().await;
            notes.push(format!(
                "{:.1} PostgreSQL transactions/task (pg_stat_database, whole database)",
                commits as f64 / settings.n as f64
            ));
            (outcome, counted_run)
        };
        if deployment.broker == Broker::Rabbitmq {
            notes.push("AMQP/task by design: 1 publish awaiting its confirm, 1 delivery, 1 ack".to_owned());
        }
        if let Some(workers) = &workers {
            let peaks: Vec<String> = workers.peak_rss_kib().into_iter().map(stats::mib).collect();
            notes.push(format!("worker peak RSS {}", peaks.join(", ")));
        }
        if warm_up.failed > 0 {
            notes.push(format!("warm-up: {}", failures(&warm_up)));
        }
        if counted_run.failed > 0 {
            notes.push(format!("counting run: {}", failures(&counted_run)));
        }
        notes.push(failures(&outcome));
        anyhow::Ok((outcome, join(&notes)))
    }
    .await;
    host.shutdown().await;
    if let Some(workers) = workers {
        workers.stop().await;
    }
    result
}

/// Tasks run before the counting and timed phases.
pub(crate) const WARM_UP_TASKS: usize = 20;
/// Tasks whose Redis commands `MONITOR` counts.
const COUNTED_TASKS: usize = 100;

/// Submits `n` tasks of `steps` (`window` in flight, from `submitters`
/// loops) with a fresh tracker set in `slot`, and waits for them to end.
/// Submits `n` one-step tasks with `Host::submit_many`, by 1000, one batch
/// after the other, and waits for them to end.
pub(crate) async fn bulk_phase(
    slot: &TrackerSlot,
    host: &Host,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let tracker = Tracker::new(n, n);
    slot.set(&tracker);
    measure::drive_batches(&tracker, (n, 1000), timeout, |tasks| async {
        let tasks = tasks.into_iter().map(|(id, index)| (id, Ping { n: index }));
        let results = host.submit_many_with_ids::<OneStep>(tasks).await?;
        Ok(results.into_iter().map(|result| result.map(drop)).collect())
    })
    .await
}

pub(crate) async fn phase(
    slot: &TrackerSlot,
    host: &Host,
    steps: Steps,
    (n, window, submitters): (usize, usize, usize),
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let tracker = Tracker::new(n, window);
    slot.set(&tracker);
    let host = host.clone();
    let outcome = measure::drive(&tracker, n, submitters, timeout, move |id, index| {
        let host = host.clone();
        async move {
            let request = Ping { n: index };
            match steps {
                Steps::One => host.submit_with_id::<OneStep>(id, request).await.map(drop),
                Steps::Three => host.submit_with_id::<ThreeSteps>(id, request).await.map(drop),
            }
        }
    })
    .await?;
    Ok(outcome)
}
