//! Section 4 of the issue: large files. A zip of 1 GiB of input through S3
//! in Distributed mode, with the demo's CreateZipFromFiles: an `api` and a
//! `worker` process of the demo binary, the input uploaded with
//! [`ApiClient::submit_zip`] and followed to completion over SSE. Reports
//! MB/s and the peak resident memory (`VmHWM`) of both processes.
//!
//! The input files are generated streaming into a temporary directory and
//! deleted afterwards, as are the objects the task stored.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dtask::TaskStatus;
use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};
use dtask::distributed::dtask_postgres::PostgresConfig;
use dtask::distributed::dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};
use dtask::distributed::dtask_s3::{S3Config, S3ObjectStore};
use dtask::infra::{ObjectStore, ObjectStoreExt};
use dtask_demo::client::ApiClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::distributed::deploy::{Broker, Endpoints, delete_keys};
use crate::stats;
use crate::table::{Row, Table};

const SECTION: &str = "4 Large files";
const MIB: u64 = 1024 * 1024;
/// The target of the issue: peak RSS per process.
const TARGET_MIB: u64 = 128;

/// What the large-files section runs.
#[derive(Debug, Clone)]
pub(crate) struct LargeFilesSettings {
    /// Total input size in MiB.
    pub(crate) total_mib: u64,
    /// Number of input files it is split into.
    pub(crate) files: usize,
    /// The broker.
    pub(crate) broker: Broker,
    /// Where the services are.
    pub(crate) endpoints: Endpoints,
    /// How long the task may take.
    pub(crate) timeout: Duration,
}

/// Runs the section and adds its rows.
///
/// # Errors
/// A missing service or demo binary, or a task that does not complete.
pub(crate) fn run(settings: &LargeFilesSettings, table: &mut Table) -> anyhow::Result<()> {
    settings
        .endpoints
        .require(settings.broker == Broker::Rabbitmq, settings.broker == Broker::Postgres)?;
    let binary = demo_binary()?;
    let input = tempfile::Builder::new().prefix("dtask-bench-input-").tempdir()?;
    eprintln!(
        "Large files: generating {} MiB in {} files under {}",
        settings.total_mib,
        settings.files,
        input.path().display()
    );
    let files = generate(input.path(), settings.total_mib * MIB, settings.files.max(1))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(zip_through_cluster(settings, &binary, &files));
    drop(input);
    let measured = result?;
    let total = settings.total_mib * MIB;
    let mb_per_sec = |d: Duration| total as f64 / 1e6 / d.as_secs_f64().max(1e-9);
    let verdict = |kib: u64| {
        let met = if kib < TARGET_MIB * 1024 { "under" } else { "OVER" };
        format!("{} ({met} {TARGET_MIB} MiB)", stats::mib(kib))
    };
    let case = |what: &str| {
        format!(
            "{}: CreateZipFromFiles, {} MiB in {} files, {what}",
            settings.broker.label(),
            settings.total_mib,
            settings.files
        )
    };
    let mut upload = Row::new(SECTION, case("upload (API steps: multipart to S3)"));
    upload.n = Some(1);
    upload.rate = Some((mb_per_sec(measured.upload), "MB/s"));
    upload.notes = format!("{:.1} s", measured.upload.as_secs_f64());
    table.push(upload);
    let mut whole = Row::new(SECTION, case("submit to completed"));
    whole.n = Some(1);
    whole.rate = Some((mb_per_sec(measured.total), "MB/s"));
    whole.notes = format!(
        "{:.1} s; archive {}; peak RSS: API {}, worker {}",
        measured.total.as_secs_f64(),
        stats::mib(measured.archive_bytes / 1024),
        verdict(measured.api_peak_kib),
        verdict(measured.worker_peak_kib),
    );
    table.push(whole);
    Ok(())
}

/// What one large zip measured.
#[derive(Debug)]
struct Measured {
    upload: Duration,
    total: Duration,
    archive_bytes: u64,
    api_peak_kib: u64,
    worker_peak_kib: u64,
}

/// The demo binary beside this one, built first when run through cargo.
fn demo_binary() -> anyhow::Result<PathBuf> {
    if let Ok(cargo) = std::env::var("CARGO") {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "dtask-demo", "--bin", "dtask-demo"])
            .current_dir(workspace)
            .status()
            .context("running cargo build for the demo binary")?;
        if !status.success() {
            bail!("building the demo binary failed: {status}");
        }
    }
    let exe = std::env::current_exe()?;
    let binary = exe.with_file_name("dtask-demo");
    if !binary.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p dtask-demo`",
            binary.display()
        );
    }
    Ok(binary)
}

/// Writes `total` bytes of log-like text (it deflates about 3:1) into
/// `files` files, 1 MiB at a time.
fn generate(dir: &Path, total: u64, files: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let per_file = total / files as u64;
    let mut paths = Vec::new();
    for index in 0..files {
        let path = dir.join(format!("input-{index:02}.log"));
        let mut out = BufWriter::with_capacity(MIB as usize, std::fs::File::create(&path)?);
        let size = if index + 1 == files {
            total - per_file * (files as u64 - 1)
        } else {
            per_file
        };
        let mut block = Vec::with_capacity(MIB as usize + 256);
        let mut written = 0;
        while written < size {
            block.clear();
            while (block.len() as u64) < MIB.min(size - written) {
                let r = next();
                writeln!(
                    block,
                    "2026-11-27T12:{:02}:{:02}.{:03}Z worker-{} INFO task {:016x} step {} took {} ms, {} bytes",
                    r % 60,
                    (r >> 8) % 60,
                    (r >> 16) % 1000,
                    (r >> 26) % 32,
                    next(),
                    (r >> 31) % 3,
                    (r >> 34) % 5000,
                    (r >> 40) % 1_000_000
                )?;
            }
            let take = block.len().min(usize::try_from(size - written)?);
            out.write_all(&block[..take])?;
            written += take as u64;
        }
        out.flush()?;
        paths.push(path);
    }
    Ok(paths)
}

/// A running process of the demo binary, killed when dropped.
struct DemoProcess {
    child: Child,
    first_line: String,
}

impl DemoProcess {
    fn peak_rss_kib(&self) -> u64 {
        self.child
            .id()
            .and_then(|pid| stats::memory_kib(Some(pid), "VmHWM"))
            .unwrap_or_default()
    }
}

async fn start(binary: &Path, env: &[(&str, String)], args: &[&str]) -> anyhow::Result<DemoProcess> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting `dtask-demo {}`", args.join(" ")))?;
    let stdout = child.stdout.take().context("the demo's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first_line = match tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        other => bail!("`dtask-demo {}` printed nothing: {other:?}", args.join(" ")),
    };
    // Keep the pipe drained.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(DemoProcess { child, first_line })
}

async fn zip_through_cluster(
    settings: &LargeFilesSettings,
    binary: &Path,
    files: &[PathBuf],
) -> anyhow::Result<Measured> {
    let e = &settings.endpoints;
    let namespace = format!("dtask-bench-zip-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let env = [
        ("DTASK_MODE", "distributed".to_owned()),
        ("DTASK_QUEUE", settings.broker.arg().to_owned()),
        ("DTASK_NAMESPACE", namespace.clone()),
        ("DTASK_REDIS_URL", e.redis_url.clone()),
        ("DTASK_AMQP_URL", e.amqp_url.clone()),
        ("DTASK_DATABASE_URL", e.database_url.clone()),
        ("DTASK_S3_ENDPOINT", e.s3_endpoint.clone()),
        ("DTASK_S3_ACCESS_KEY", e.s3_access_key.clone()),
        ("DTASK_S3_SECRET_KEY", e.s3_secret_key.clone()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut api = start(binary, &env, &["api", "--listen", "127.0.0.1:0"]).await?;
    let mut worker = start(binary, &env, &["worker", "--concurrency", "4"]).await?;
    let url = api
        .first_line
        .strip_prefix("Dashboard: ")
        .with_context(|| format!("unexpected first line of the API: {}", api.first_line))?
        .trim_end_matches('/')
        .to_owned();
    let client = ApiClient::new(&url)?;
    eprintln!("Large files: zipping through {url} ({})", settings.broker.label());
    let started = Instant::now();
    let submitted = client.submit_zip(files, Some("bench.zip")).await?;
    let upload = started.elapsed();
    let mut follower = client.follow(&submitted.links.stream);
    let last = tokio::time::timeout(settings.timeout, async {
        let mut last = None;
        while let Some(progress) = follower.next().await? {
            last = Some(progress);
        }
        anyhow::Ok(last)
    })
    .await
    .context("the zip did not finish in time")??;
    let total = started.elapsed();
    let (api_peak_kib, worker_peak_kib) = (api.peak_rss_kib(), worker.peak_rss_kib());
    let _ = api.child.kill().await;
    let _ = worker.child.kill().await;
    let archive_bytes = cleanup(settings, &namespace, &submitted.task_id).await;
    match last {
        Some(progress) if progress.status == TaskStatus::Completed => {}
        other => bail!(
            "the zip task did not complete: {:?}",
            other.map(|p| (p.status, p.error))
        ),
    }
    Ok(Measured {
        upload,
        total,
        archive_bytes,
        api_peak_kib,
        worker_peak_kib,
    })
}

/// Deletes the task's objects, Redis keys and queue; returns the
/// archive's size.
async fn cleanup(settings: &LargeFilesSettings, namespace: &str, task_id: &str) -> u64 {
    let e = &settings.endpoints;
    let mut archive_bytes = 0;
    let config = S3Config::endpoint(&e.s3_endpoint, &e.s3_access_key, &e.s3_secret_key);
    match S3ObjectStore::new(config) {
        Ok(store) => {
            if let Ok(objects) = store.list("processed-files", task_id).await {
                archive_bytes = objects.iter().map(|o| o.size).sum();
            }
            for bucket in ["incoming-files", "processed-files"] {
                if let Err(error) = store.delete_prefix(bucket, task_id).await {
                    eprintln!("deleting the task's objects in {bucket} failed: {error}");
                }
            }
        }
        Err(error) => eprintln!("cannot reach S3 to clean up: {error}"),
    }
    let queue = format!("{namespace}.file-processing");
    let cleaned = async {
        let client = redis::Client::open(e.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        // Every key of the task holds its id in a hash tag
        // (`dtask:state:{<id>}`, `dtask:lock:{task:<id>}`...).
        delete_keys(&mut conn, &format!("dtask:*{task_id}*")).await?;
        match settings.broker {
            Broker::Rabbitmq => {
                AmqpQueue::connect(AmqpConfig::new(e.amqp_url.clone()))
                    .await?
                    .delete(&queue)
                    .await?;
            }
            Broker::RedisStreams => {
                RedisStreamsQueue::connect(RedisStreamsConfig::new(e.redis_url.clone()))
                    .await?
                    .delete_queue(&queue)
                    .await?;
            }
            Broker::Postgres => {
                PostgresConfig::new(e.database_url.clone())
                    .connect()
                    .await?
                    .queue()
                    .delete_queue(&queue)
                    .await?;
            }
        }
        anyhow::Ok(())
    };
    if let Err(error) = cleaned.await {
        eprintln!("cleaning up the large-files run failed: {error:#}");
    }
    archive_bytes
}
