//! End-to-end throughput of a running deployment: submits N small
//! CreateZipFromFiles tasks over HTTP (C in flight) and reports tasks per
//! second until all have completed.
//!
//! ```text
//! cargo run --release --example cluster_throughput -- http://127.0.0.1:8080 500 32
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use dtask_demo::client::ApiClient;
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let count: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let in_flight: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("note.txt");
    std::fs::write(&file, b"a small file to zip\n")?;
    let client = Arc::new(ApiClient::new(&server)?);

    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..count)
        .map(|_| {
            let client = Arc::clone(&client);
            let file = file.clone();
            async move { client.submit_zip(&[file], None).await.map(|s| s.links.status) }
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let submitted = started.elapsed();
    let mut pending = ids;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for link in pending {
            let progress = client.status(&link).await?;
            if !progress.is_terminal() {
                still.push(link);
            } else if progress.status != dtask::TaskStatus::Completed {
                anyhow::bail!("a task ended {:?}: {:?}", progress.status, progress.error);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let total = started.elapsed();
    println!(
        "{count} tasks: submitted in {:.2} s ({:.0}/s), all completed in {:.2} s: {:.0} tasks/s end to end",
        submitted.as_secs_f64(),
        count as f64 / submitted.as_secs_f64(),
        total.as_secs_f64(),
        count as f64 / total.as_secs_f64()
    );
    Ok(())
}
