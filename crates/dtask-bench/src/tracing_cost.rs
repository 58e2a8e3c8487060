//! What tracing costs: the InProcess three-step flood of section 2 in a
//! child process set up as the demo's processes are (`dtask-telemetry`,
//! the OpenTelemetry bridge on the host), once with traces off (no OTLP
//! endpoint: the kernel's spans are disabled) and once exporting every
//! span over OTLP/HTTP to a sink in this process. Each mode runs in a
//! process of its own because a process has one global subscriber.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dtask::Host;
use serde::{Deserialize, Serialize};

use crate::inprocess::{InProcessSettings, join};
use crate::measure::{self, Tracker};
use crate::stats;
use crate::table::{Row, Table};
use crate::task::{Ping, ThreeSteps};

const SECTION: &str = "2 InProcess";

/// A child run of the flood (`dtask-bench traced-case`).
#[derive(Debug, clap::Args)]
pub(crate) struct CaseArgs {
    /// Tasks.
    #[arg(long)]
    n: usize,
    /// Tasks in flight.
    #[arg(long)]
    window: usize,
    /// The host's worker concurrency.
    #[arg(long)]
    concurrency: usize,
    /// Tokio worker threads.
    #[arg(long)]
    threads: usize,
    /// How long the run may take, in seconds.
    #[arg(long)]
    timeout_secs: u64,
    /// Export every span over OTLP/HTTP to this base URL; none: traces off.
    #[arg(long)]
    otlp_endpoint: Option<String>,
}

/// What a child run measured, as it prints it (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
struct CaseResult {
    ended: usize,
    failed: usize,
    rate: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
}

/// Runs one child case and prints its result.
///
/// # Errors
/// Telemetry that cannot be set up, a runtime that cannot be built, a run
/// that fails.
pub(crate) fn case(args: &CaseArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut telemetry = dtask_telemetry::Telemetry::builder("dtask-bench").log_filter("warn");
        if let Some(endpoint) = &args.otlp_endpoint {
            telemetry = telemetry.otlp_endpoint(endpoint);
        }
        let telemetry = telemetry.init()?;
        let tracker = Tracker::new(args.n, args.window);
        let host = Host::builder()
            .in_process()
            .register(ThreeSteps)
            .worker_concurrency(args.concurrency)
            .trace_bridge(dtask_telemetry::OtelBridge)
            .on_event(tracker.listener())
            .build()?;
        let outcome = measure::drive(&tracker, args.n, 1, Duration::from_secs(args.timeout_secs), {
            let host = host.clone();
            move |id, index| {
                let host = host.clone();
                async move { host.submit_with_id::<ThreeSteps>(id, Ping { n: index }).await.map(drop) }
            }
        })
        .await?;
        host.shutdown().await;
        telemetry.shutdown();
        let micros = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e6);
        let result = CaseResult {
            ended: outcome.completed + outcome.failed,
            failed: outcome.failed,
            rate: outcome.rate(),
            p50_us: micros(outcome.percentile(0.5)),
            p99_us: micros(outcome.percentile(0.99)),
        };
        println!("{}", serde_json::to_string(&result)?);
        anyhow::Ok(())
    })
}

/// An OTLP/HTTP sink: accepts every export and counts requests and bytes.
async fn sink() -> anyhow::Result<(String, Arc<(AtomicU64, AtomicU64)>)> {
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let seen = Arc::clone(&counts);
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: bytes::Bytes| async move {
            seen.0.fetch_add(1, Ordering::Relaxed);
            seen.1.fetch_add(body.len() as u64, Ordering::Relaxed);
            [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")]
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((endpoint, counts))
}

/// Runs the off and on cases on 2 threads (`settings.repeat` times each,
/// the median shown) and adds their rows.
///
/// # Errors
/// A child that fails or prints no result.
pub(crate) fn run(settings: &InProcessSettings, table: &mut Table) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let (endpoint, counts) = runtime.block_on(sink())?;
    let threads = settings.threads.iter().copied().max().unwrap_or(2);
    eprintln!("InProcess, tracing off and on, {threads} worker thread(s)");
    let child = |otlp: Option<&str>| -> anyhow::Result<CaseResult> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args([
            "traced-case",
            "--n",
            &settings.n.to_string(),
            "--window",
            &settings.window.to_string(),
            "--concurrency",
            &settings.concurrency.to_string(),
            "--threads",
            &threads.to_string(),
            "--timeout-secs",
            &settings.timeout.as_secs().to_string(),
        ]);
        if let Some(endpoint) = otlp {
            command.args(["--otlp-endpoint", endpoint]);
        }
        let output = command.output()?;
        anyhow::ensure!(
            output.status.success(),
            "the traced case failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = String::from_utf8(output.stdout)?;
        Ok(serde_json::from_str(line.trim())?)
    };
    let median = |otlp: Option<&str>| -> anyhow::Result<(CaseResult, Vec<f64>)> {
        let mut runs = (0..settings.repeat.max(1))
            .map(|_| child(otlp))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
        runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let middle = runs.swap_remove(runs.len() / 2);
        Ok((middle, rates))
    };
    let started = Instant::now();
    let (off, off_rates) = median(None)?;
    let (on, on_rates) = median(Some(&endpoint))?;
    let exports = counts.0.load(Ordering::Relaxed);
    let bytes = counts.1.load(Ordering::Relaxed);
    let label = |what: &str| format!("dtask 3-step, {what}, {threads} threads");
    let row = |case: &str, result: &CaseResult| {
        let mut row = Row::new(SECTION, case);
        row.n = Some(result.ended);
        row.rate = Some((result.rate, "tasks/s"));
        row.p50 = result.p50_us.map(|us| Duration::from_secs_f64(us / 1e6));
        row.p99 = result.p99_us.map(|us| Duration::from_secs_f64(us / 1e6));
        row
    };
    let mut off_row = row(&label("telemetry on, traces off"), &off);
    off_row.notes = join(&[
        "dtask-telemetry and the OTel bridge installed, no OTLP endpoint".to_owned(),
        stats::spread(&off_rates),
    ]);
    table.push(off_row);
    let mut on_row = row(&label("traced, OTLP/HTTP export"), &on);
    on_row.vs_raw = Some(100.0 * on.rate / off.rate);
    on_row.notes = join(&[
        format!(
            "% is of traces off; {exports} exports, {} MiB of spans to a local sink (batch processor defaults: spans beyond its queue are dropped)",
            bytes / (1024 * 1024)
        ),
        stats::spread(&on_rates),
    ]);
    table.push(on_row);
    eprintln!("  took {:.0} s", started.elapsed().as_secs_f64());
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}
