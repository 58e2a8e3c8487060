//! Counting the Redis commands a run costs, from `INFO commandstats`
//! before and after it.
//!
//! The counters are server-wide: other clients of the same Redis add to
//! them, and `CONFIG RESETSTAT` (by anyone) sets them back to zero. So a
//! [`CommandCount`] takes the delta, detects a reset (a counter that went
//! down), and estimates the background rate over a short idle probe before
//! the run, subtracting it and saying how large it was. Redis counts the
//! commands a Lua script runs as well as the `EVALSHA` that ran it, so a
//! count is an upper bound on the client's round trips.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// Calls per command name.
type Calls = BTreeMap<String, u64>;

/// Reads `INFO commandstats` of the connection's server.
///
/// # Errors
/// A Redis error.
pub(crate) async fn snapshot(conn: &mut MultiplexedConnection) -> redis::RedisResult<Calls> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    Ok(parse(&info))
}

fn parse(info: &str) -> Calls {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Commands a run cost, per task.
#[derive(Debug, Clone)]
pub(crate) struct CommandCount {
    /// Commands per task, by name (background subtracted), largest first.
    pub(crate) per_task: Vec<(String, f64)>,
    /// Their sum.
    pub(crate) total_per_task: f64,
    /// Commands per second other clients sent during the idle probe.
    pub(crate) background_per_sec: f64,
    /// The background's share of the run's delta.
    pub(crate) background_share: f64,
    /// A counter went down: the stats were reset during the run.
    pub(crate) reset: bool,
}

impl CommandCount {
    /// "12.0 Redis cmds/task (evalsha 4.0, hset 2.0, ...)", with a caveat
    /// when the figure is unreliable.
    pub(crate) fn summary(&self, top: usize) -> String {
        if self.reset {
            return "Redis cmds/task: unknown (stats were reset during the run)".to_owned();
        }
        let parts: Vec<String> = self
            .per_task
            .iter()
            .filter(|(_, n)| *n >= 0.05)
            .take(top)
            .map(|(name, n)| format!("{name} {n:.1}"))
            .collect();
        let mut out = format!("{:.1} Redis cmds/task ({})", self.total_per_task, parts.join(", "));
        if self.background_share > 0.05 {
            out.push_str(&format!(
                " [noisy: other clients {:.0} cmds/s, {:.0} % of the delta, subtracted]",
                self.background_per_sec,
                100.0 * self.background_share
            ));
        }
        out
    }
}

/// Measures the background for `probe`, then brackets the run.
#[derive(Debug)]
pub(crate) struct Counter {
    before: Calls,
    started: Instant,
    background_per_sec: Calls,
}

impl Counter {
    /// Probes the background for `probe`, then takes the "before" snapshot.
    ///
    /// # Errors
    /// A Redis error.
    pub(crate) async fn start(conn: &mut MultiplexedConnection, probe: Duration) -> redis::RedisResult<Self> {
        let first = snapshot(conn).await?;
        let probe_started = Instant::now();
        tokio::time::sleep(probe).await;
        let before = snapshot(conn).await?;
        let seconds = probe_started.elapsed().as_secs_f64().max(1e-3);
        let background_per_sec = delta(&first, &before)
            .0
            .into_iter()
            .map(|(name, calls)| (name, (calls as f64 / seconds).round() as u64))
            .collect();
        Ok(Self {
            before,
            started: Instant::now(),
            background_per_sec,
        })
    }

    /// Takes the "after" snapshot and divides the delta by `tasks`.
    ///
    /// # Errors
    /// A Redis error.
    pub(crate) async fn finish(
        self,
        conn: &mut MultiplexedConnection,
        tasks: usize,
    ) -> redis::RedisResult<CommandCount> {
        let after = snapshot(conn).await?;
        let seconds = self.started.elapsed().as_secs_f64();
        let (calls, reset) = delta(&self.before, &after);
        let raw_total: u64 = calls.values().sum();
        let mut background_total = 0.0;
        let mut per_task: Vec<(String, f64)> = calls
            .into_iter()
            .map(|(name, calls)| {
                let background = self.background_per_sec.get(&name).copied().unwrap_or(0) as f64 * seconds;
                let background = background.min(calls as f64);
                background_total += background;
                (name, (calls as f64 - background) / tasks.max(1) as f64)
            })
            .collect();
        per_task.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(CommandCount {
            total_per_task: per_task.iter().map(|(_, n)| n).sum(),
            per_task,
            background_per_sec: self.background_per_sec.values().sum::<u64>() as f64,
            background_share: background_total / (raw_total.max(1) as f64),
            reset,
        })
    }
}

/// Calls made between two snapshots, leaving out `info` (the snapshots'
/// own), and whether any counter went down.
fn delta(before: &Calls, after: &Calls) -> (Calls, bool) {
    let mut reset = false;
    let mut calls = Calls::new();
    for (name, &now) in after {
        let then = before.get(name).copied().unwrap_or(0);
        if now < then {
            reset = true;
        } else if now > then && name != "info" {
            calls.insert(name.clone(), now - then);
        }
    }
    reset |= before.keys().any(|name| !after.contains_key(name));
    (calls, reset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# Commandstats\r\ncmdstat_xadd:calls=10,usec=5,usec_per_call=0.5,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=3,usec=1,usec_per_call=0.3,rejected_calls=0,failed_calls=0\r\n";
    const AFTER: &str = "# Commandstats\r\ncmdstat_xadd:calls=30,usec=5,usec_per_call=0.5,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=5,usec=1,usec_per_call=0.3,rejected_calls=0,failed_calls=0\r\ncmdstat_hset:calls=4,usec=1,usec_per_call=0.3,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn the_delta_leaves_out_info_and_counts_new_commands() {
        let (calls, reset) = delta(&parse(BEFORE), &parse(AFTER));
        assert!(!reset);
        assert_eq!(calls.get("xadd"), Some(&20));
        assert_eq!(calls.get("hset"), Some(&4));
        assert!(!calls.contains_key("info"));
    }

    #[test]
    fn a_counter_that_went_down_is_a_reset() {
        let (_, reset) = delta(&parse(AFTER), &parse(BEFORE));
        assert!(reset);
    }
}
