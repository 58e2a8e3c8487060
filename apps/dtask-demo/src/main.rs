//! The dtask demo: CreateZipFromFiles in InProcess mode.
//!
//! ```text
//! cargo run --release                                   # zip a few sample files
//! cargo run --release -- zip FILE... --output OUT.zip   # zip your files
//! ```

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Declared saga-shaped background tasks, run in one process.
#[derive(Debug, Parser)]
#[command(name = "dtask-demo", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Zips a few generated sample files and lists the archive (the
    /// default).
    Demo,
    /// Zips FILE... into OUT.zip with CreateZipFromFiles, showing live
    /// progress.
    Zip {
        /// The files to zip.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the archive.
        #[arg(short, long, default_value = "archive.zip")]
        output: PathBuf,
        /// Keep the stored files in memory instead of a temporary
        /// directory (the default object store of InProcess mode; needs
        /// memory for the inputs and the archive).
        #[arg(long)]
        in_memory: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let result = match args.command.unwrap_or(Command::Demo) {
        Command::Demo => cli::demo().await,
        Command::Zip {
            files,
            output,
            in_memory,
        } => cli::zip(files, output, in_memory).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
