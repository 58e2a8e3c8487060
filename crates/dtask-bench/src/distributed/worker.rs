//! Workers as separate processes: the `worker` sub-mode of this binary
//! (a Distributed host that only runs workers and reports each task's end
//! on stdout), and the parent's side that spawns and follows them.
//!
//! The report is one line per ended task, `done <task id> <unix nanos>
//! <1|0>`: the time is the `Completed` (or other terminal) event's, on the
//! wall clock both processes share, so no Redis subscription per task is
//! needed to see completions.

use std::io::Write;
use std::process::Stdio;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};
use dtask::TaskId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use super::deploy::{Broker, Deployment, Endpoints};
use crate::measure::{self, TrackerSlot};
use crate::stats;

/// The hidden `worker` sub-mode's arguments.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkerArgs {
    /// The broker.
    #[arg(long, value_enum)]
    broker: Broker,
    /// The deployment's queue namespace.
    #[arg(long)]
    namespace: String,
    /// The deployment's Redis key prefix.
    #[arg(long)]
    key_prefix: String,
    /// Tasks run at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Where the services are.
    #[command(flatten)]
    endpoints: Endpoints,
}

/// Runs a worker until stdin closes, reporting every ended task on stdout.
///
/// # Errors
/// A service that cannot be reached.
pub(crate) async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let deployment = Deployment {
        broker: args.broker,
        namespace: args.namespace,
        key_prefix: args.key_prefix,
        endpoints: args.endpoints,
        prefetch: u16::try_from(args.concurrency.max(1)).unwrap_or(u16::MAX),
    };
    let (lines, pending) = mpsc::channel::<String>();
    let writer = std::thread::spawn(move || {
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        let _ = writeln!(stdout, "ready").and_then(|()| stdout.flush());
        // Write what is pending, then flush before waiting again.
        while let Ok(line) = pending.recv() {
            let _ = stdout.write_all(line.as_bytes());
            while let Ok(more) = pending.try_recv() {
                let _ = stdout.write_all(more.as_bytes());
            }
            let _ = stdout.flush();
        }
    });
    let sender = Mutex::new(lines);
    let host = deployment
        .host(args.concurrency, true, move |event| {
            if let Some(completed) = measure::terminal(&event.kind) {
                let line = format!(
                    "done {} {} {}\n",
                    event.task_id,
                    event.at.unix_timestamp_nanos(),
                    u8::from(completed)
                );
                let _ = sender.lock().unwrap_or_else(|e| e.into_inner()).send(line);
            }
        })
        .await?;
    // The parent closes stdin to stop the worker.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while stdin.read(&mut sink).await.unwrap_or(0) > 0 {}
    let _ = tokio::time::timeout(Duration::from_secs(10), host.shutdown()).await;
    drop(host);
    let _ = writer.join();
    Ok(())
}

/// Worker processes of one deployment, reporting to a tracker slot.
#[derive(Debug)]
pub(crate) struct WorkerProcesses {
    children: Vec<(Child, Option<ChildStdin>)>,
    readers: Vec<JoinHandle<()>>,
}

impl WorkerProcesses {
    /// Starts `count` worker processes and waits until each is ready.
    ///
    /// # Errors
    /// A process that cannot start or does not become ready in 30 s.
    pub(crate) async fn spawn(
        deployment: &Deployment,
        count: usize,
        concurrency: usize,
        slot: &TrackerSlot,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let mut processes = Self {
            children: Vec::new(),
            readers: Vec::new(),
        };
        for _ in 0..count {
            let e = &deployment.endpoints;
            let mut child = Command::new(&exe)
                .arg("worker")
                .args(["--broker", deployment.broker.arg()])
                .args(["--namespace", &deployment.namespace])
                .args(["--key-prefix", &deployment.key_prefix])
                .args(["--concurrency", &concurrency.to_string()])
                .args(["--redis-url", &e.redis_url, "--amqp-url", &e.amqp_url])
                .args(["--s3-endpoint", &e.s3_endpoint, "--s3-access-key", &e.s3_access_key])
                .args(["--s3-secret-key", &e.s3_secret_key])
                // By environment: the URL holds a password.
                .env("DTASK_DATABASE_URL", &e.database_url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker process")?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take().context("the worker's stdout")?;
            processes.children.push((child, stdin));
            let mut lines = BufReader::new(stdout).lines();
            let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
            match first {
                Ok(Ok(Some(line))) if line == "ready" => {}
                other => bail!("a worker process did not become ready: {other:?}"),
            }
            let slot = slot.clone();
            processes.readers.push(tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some((id, nanos, completed)) = parse(&line) {
                        slot.end_at_unix_nanos(id, nanos, completed);
                    }
                }
            }));
        }
        Ok(processes)
    }

    /// The peak resident memory of each process, in KiB.
    pub(crate) fn peak_rss_kib(&self) -> Vec<u64> {
        self.children
            .iter()
            .filter_map(|(child, _)| stats::memory_kib(child.id(), "VmHWM"))
            .collect()
    }

    /// Closes their stdin (they shut down) and waits for them, killing
    /// any that takes more than 15 s.
    pub(crate) async fn stop(mut self) {
        for (child, stdin) in &mut self.children {
            drop(stdin.take());
            if tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        for reader in self.readers {
            reader.abort();
        }
    }
}

fn parse(line: &str) -> Option<(TaskId, u128, bool)> {
    let mut parts = line.strip_prefix("done ")?.split(' ');
    let id = parts.next()?.parse().ok()?;
    let nanos = parts.next()?.parse().ok()?;
    let completed = parts.next()? == "1";
    Some((id, nanos, completed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_parse() {
        let id = TaskId::new();
        assert_eq!(parse(&format!("done {id} 17 1")), Some((id, 17, true)));
        assert_eq!(parse(&format!("done {id} 17 0")), Some((id, 17, false)));
        assert_eq!(parse("ready"), None);
    }
}
