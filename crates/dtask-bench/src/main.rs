//! `dtask-bench`: the benchmark runner of dtask. It runs the sections of
//! issue 5's benchmarks (serializers, InProcess, Distributed, large files),
//! each beside its baseline, and dtask beside its peers (BullMQ, apalis) on
//! the same Redis, and prints one table, then the same table as markdown.
//! It measures and prints; it asserts nothing.
//!
//! ```text
//! cargo run --release -p dtask-bench                              # every section
//! cargo run --release -p dtask-bench -- --sections serializers
//! cargo run --release -p dtask-bench -- --sections in-process --n 20000
//! cargo run --release -p dtask-bench -- --sections peers --peers-n 20000
//! cargo run --release -p dtask-bench -- --help
//! ```

/// mimalloc instead of the system allocator: the saga kernel allocates
/// small, short-lived values (progress snapshots, events) on every step, and
/// glibc's malloc was a third of the InProcess profile (BENCHMARKS.md). The
/// demo binary keeps the system allocator: with mimalloc its peak RSS for a
/// 1 GiB upload went from 79 to 150 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod distributed;
mod inprocess;
mod large_files;
mod measure;
mod peers;
mod serializers;
mod stats;
mod table;
mod task;
mod tracing_cost;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use distributed::deploy::{Broker, Endpoints};
use table::Table;

/// Runs the dtask benchmarks and prints one table.
#[derive(Debug, Parser)]
#[command(name = "dtask-bench", about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A worker process of the Distributed section (started by the
    /// benchmark itself).
    #[command(hide = true)]
    Worker(distributed::worker::WorkerArgs),
    /// One InProcess flood with telemetry set up, traces off or exported
    /// (started by the benchmark itself).
    #[command(hide = true)]
    TracedCase(tracing_cost::CaseArgs),
}

/// A section of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    /// JSON, MessagePack and Protobuf on the demo's saga states (item 1).
    Serializers,
    /// InProcess throughput and latency (item 2).
    InProcess,
    /// InProcess throughput with traces off and exported over OTLP.
    Tracing,
    /// Distributed throughput and latency (item 3).
    Distributed,
    /// A 1 GiB zip through S3 (item 4).
    LargeFiles,
    /// dtask beside BullMQ and apalis on the same Redis.
    Peers,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The sections to run (the serializers take about 5 s, the large-files
    /// one about a minute).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "serializers,in-process,tracing,distributed,large-files,peers"
    )]
    sections: Vec<Section>,
    /// How long one case may take, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Runs of each throughput case and raw baseline; the table shows the
    /// run of median rate and lists every run's rate.
    #[arg(long, default_value_t = 3)]
    repeat: usize,

    /// Serializers: timed batches per case (the median is taken over
    /// them).
    #[arg(long, default_value_t = 200)]
    serializer_samples: usize,
    /// Serializers: about how long one batch runs, in microseconds.
    #[arg(long, default_value_t = 1_000)]
    serializer_batch_us: u64,

    /// InProcess: tasks per throughput case.
    #[arg(long, default_value_t = 100_000)]
    n: usize,
    /// InProcess: tasks of the one-at-a-time latency case.
    #[arg(long, default_value_t = 2_000)]
    latency_n: usize,
    /// InProcess: tasks in flight in the throughput cases.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// InProcess: concurrent submit loops.
    #[arg(long, default_value_t = 1)]
    submitters: usize,
    /// InProcess: the host's worker concurrency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// InProcess: tokio worker thread counts to run on.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,

    /// Distributed: tasks (and raw messages) per case.
    #[arg(long, default_value_t = 3_000)]
    dist_n: usize,
    /// Distributed: tasks in flight.
    #[arg(long, default_value_t = 128)]
    dist_window: usize,
    /// Distributed: concurrent submit loops.
    #[arg(long, default_value_t = 32)]
    dist_submitters: usize,
    /// Distributed: each worker's concurrency (and RabbitMQ prefetch).
    #[arg(long, default_value_t = 64)]
    dist_concurrency: usize,
    /// Distributed: the brokers.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "redis-streams,rabbitmq,postgres"
    )]
    brokers: Vec<Broker>,
    /// Distributed: worker processes of the separate-process cases (0
    /// skips them).
    #[arg(long, default_value_t = 1)]
    worker_processes: usize,

    /// Peers: tasks (jobs) per run; the window, submitters and concurrency
    /// are the Distributed section's.
    #[arg(long, default_value_t = 10_000)]
    peers_n: usize,

    /// Large files: total input size in MiB.
    #[arg(long, default_value_t = 1024)]
    large_mib: u64,
    /// Large files: how many input files.
    #[arg(long, default_value_t = 8)]
    large_file_count: usize,
    /// Large files: the broker.
    #[arg(long, value_enum, default_value = "rabbitmq")]
    large_broker: Broker,

    /// Distributed: keep each case's Redis keys and queues (for
    /// inspection) instead of deleting them.
    #[arg(long)]
    keep: bool,

    /// Where the services are.
    #[command(flatten)]
    endpoints: Endpoints,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::TracedCase(case)) = &args.command {
        // Sets up its own telemetry, as a dtask process does.
        return tracing_cost::case(case);
    }
    // dtask logs what goes wrong (a worker loop that cannot consume, a
    // lost lock) as tracing events: show warnings on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match args.command {
        Some(Command::Worker(worker)) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(distributed::worker::run(worker))
        }
        Some(Command::TracedCase(_)) => unreachable!("handled above"),
        None => run(args.run),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut table = Table::default();
    let wants = |section| args.sections.contains(&section);
    if wants(Section::Serializers) {
        let settings = serializers::SerializerSettings {
            samples: args.serializer_samples,
            batch: Duration::from_micros(args.serializer_batch_us),
            warm_up: Duration::from_millis(50),
        };
        serializers::run(&settings, &mut table)?;
    }
    let inprocess = inprocess::InProcessSettings {
        n: args.n,
        latency_n: args.latency_n,
        window: args.window,
        submitters: args.submitters,
        concurrency: args.concurrency,
        threads: args.threads.clone(),
        timeout,
        repeat: args.repeat,
    };
    if wants(Section::InProcess) {
        inprocess::run(&inprocess, &mut table)?;
    }
    if wants(Section::Tracing) {
        tracing_cost::run(&inprocess, &mut table)?;
    }
    if wants(Section::Distributed) {
        let settings = distributed::DistributedSettings {
            n: args.dist_n,
            window: args.dist_window,
            submitters: args.dist_submitters,
            concurrency: args.dist_concurrency,
            brokers: args.brokers.clone(),
            worker_processes: args.worker_processes,
            endpoints: args.endpoints.clone(),
            timeout,
            keep: args.keep,
            repeat: args.repeat,
        };
        distributed::run(&settings, &mut table)?;
    }
    if wants(Section::LargeFiles) {
        let settings = large_files::LargeFilesSettings {
            total_mib: args.large_mib,
            files: args.large_file_count,
            broker: args.large_broker,
            endpoints: args.endpoints.clone(),
            timeout: Duration::from_secs(args.timeout_secs.max(900)),
        };
        large_files::run(&settings, &mut table)?;
    }
    if wants(Section::Peers) {
        let settings = peers::PeersSettings {
            n: args.peers_n,
            window: args.dist_window,
            submitters: args.dist_submitters,
            concurrency: args.dist_concurrency,
            endpoints: args.endpoints.clone(),
            timeout,
            repeat: args.repeat,
        };
        peers::run(&settings, &mut table)?;
    }
    println!("{}", table.text());
    println!("{}", table.markdown());
    Ok(())
}
