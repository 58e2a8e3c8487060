//! The dtask demo: CreateZipFromFiles and VideoTranscode.
//!
//! ```text
//! cargo run --release                                   # the server and its dashboard on 127.0.0.1:8080
//! cargo run --release -- submit FILE... -o OUT.zip      # zip through the server, with live progress
//! cargo run --release -- zip FILE... --output OUT.zip   # zip in this process, no server
//! cargo run --release -- demo                           # zip a few sample files and list the archive
//! cargo run --release -- video IN.mp4 --output DIR      # transcode in this process (needs ffmpeg)
//! cargo run --release -- submit-video IN.mp4 -o DIR     # transcode through the server
//! cargo run --release -- reconcile --mode distributed --dry-run   # list orphaned objects
//! ```

mod cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Declared saga-shaped background tasks: the CreateZipFromFiles and
/// VideoTranscode demo.
#[derive(Debug, Parser)]
#[command(name = "dtask-demo", version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: cli::ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the HTTP API, the dashboard and the workers (the default), in
    /// either mode.
    Serve(cli::ServeArgs),
    /// Runs the HTTP API and the dashboard only (Distributed mode): it runs
    /// the Api steps and hands tasks to the workers.
    Api(cli::ServeArgs),
    /// Runs a worker only (Distributed mode): consumes the queue and runs
    /// the Worker steps.
    Worker {
        /// Distributed-mode options.
        #[command(flatten)]
        deploy: cli::deploy::DeployArgs,
        /// How many tasks this worker runs at once.
        #[arg(long, env = "DTASK_WORKER_CONCURRENCY", default_value_t = 8)]
        concurrency: usize,
        /// Serve `/metrics`, `/healthz` and `/readyz` on this address.
        #[arg(long, env = "DTASK_METRICS_LISTEN", value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Uploads FILE... to a running server, follows the task, downloads
    /// the archive. Ctrl-C cancels the task.
    Submit {
        /// The files to zip.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The server's URL.
        #[arg(long, env = "DTASK_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Where to write the archive.
        #[arg(short, long, default_value = "archive.zip")]
        output: PathBuf,
    },
    /// Zips FILE... into OUT.zip in this process (no server), showing live
    /// progress.
    Zip {
        /// The files to zip.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the archive.
        #[arg(short, long, default_value = "archive.zip")]
        output: PathBuf,
        /// Keep the stored files in memory instead of a temporary
        /// directory (needs memory for the inputs and the archive).
        #[arg(long)]
        in_memory: bool,
    },
    /// Transcodes FILE with VideoTranscode in this process (no server),
    /// showing live progress; writes the renditions and the thumbnail into
    /// DIR. Needs ffmpeg and ffprobe.
    Video {
        /// The video.
        file: PathBuf,
        /// The directory to write into (created if missing).
        #[arg(short, long, default_value = "renditions")]
        output: PathBuf,
    },
    /// Uploads a video to a running server for VideoTranscode, follows the
    /// task, lists the renditions and downloads the tallest into DIR.
    /// Ctrl-C cancels the task.
    SubmitVideo {
        /// The video.
        file: PathBuf,
        /// The server's URL.
        #[arg(long, env = "DTASK_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The directory to download into.
        #[arg(short, long, default_value = ".")]
        output: PathBuf,
        /// A URL that receives the result as JSON (NotifyWebhook).
        #[arg(long)]
        notify_url: Option<String>,
    },
    /// Zips a few generated sample files in this process and lists the
    /// archive.
    Demo,
    /// Deletes the objects of failed, cancelled, compensated and unknown
    /// tasks from the task buckets (Distributed mode) and prints what it
    /// deleted; see docs/reconciliation.md.
    /// Prints the hash of an API key, as the keys file
    /// (`DTASK_AUTH_API_KEYS`) holds it; reads the key from standard input
    /// when it is not given.
    HashApiKey {
        /// The key.
        key: Option<String>,
    },
    Reconcile {
        /// Distributed-mode options.
        #[command(flatten)]
        deploy: cli::deploy::DeployArgs,
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Objects written less than this many seconds ago are kept.
        #[arg(long, default_value_t = 3600)]
        grace_secs: u64,
        /// Also delete completed tasks' objects older than this many days
        /// (default: keep them for ever).
        #[arg(long, env = "DTASK_COMPLETED_RETENTION_DAYS")]
        completed_retention_days: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let command = args.command.unwrap_or(Command::Serve(args.serve));
    // A long-running process logs at INFO, exports traces when the OTEL_*
    // variables ask, and keeps metrics; a one-shot command only warns.
    let (service, long_running) = match &command {
        Command::Serve(_) => ("dtask", true),
        Command::Api(_) => ("dtask-api", true),
        Command::Worker { .. } => ("dtask-worker", true),
        _ => ("dtask-cli", false),
    };
    let telemetry = dtask_telemetry::Telemetry::builder(service)
        .log_filter(if long_running { "info" } else { "warn" })
        .metrics(long_running)
        .ansi(std::io::stderr().is_terminal())
        .init();
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = telemetry.prometheus().cloned();
    let result = match command {
        Command::Serve(serve) => cli::serve(serve, false, metrics).await,
        Command::Api(api) => cli::serve(api, true, metrics).await,
        Command::HashApiKey { key } => cli::hash_api_key(key),
        Command::Worker {
            deploy,
            concurrency,
            metrics_listen,
        } => cli::worker(deploy, concurrency, metrics_listen, metrics).await,
        Command::Submit { files, server, output } => cli::submit(files, server, output).await,
        Command::Zip {
            files,
            output,
            in_memory,
        } => cli::zip(files, output, in_memory).await,
        Command::Video { file, output } => cli::video(file, output).await,
        Command::SubmitVideo {
            file,
            server,
            output,
            notify_url,
        } => cli::submit_video(file, server, output, notify_url).await,
        Command::Demo => cli::demo().await,
        Command::Reconcile {
            deploy,
            dry_run,
            grace_secs,
            completed_retention_days,
        } => cli::reconcile(deploy, dry_run, grace_secs, completed_retention_days).await,
    };
    // Exports the spans still buffered.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// line already holds (backend errors repeat their source in their own
/// message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}
