//! Counting the commands a few tasks send to Redis, with `MONITOR`: only
//! the commands that name a key under the deployment's prefix, split into
//! those a client sent (its round trips, pipelined or not) and those a Lua
//! script ran (`[0 lua]` in the monitor's lines). `MONITOR` slows Redis
//! down, so it watches a short counting run, never the timed one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;

/// Commands by name, from clients and from scripts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    /// Sent by clients.
    pub(crate) client: BTreeMap<String, u64>,
    /// Run by Lua scripts.
    pub(crate) lua: BTreeMap<String, u64>,
}

impl Counts {
    fn record(&mut self, line: &str, prefix: &str) {
        if !line.contains(prefix) {
            return;
        }
        let Some((source, rest)) = line.split_once("] ") else {
            return;
        };
        let Some(name) = rest.split('"').nth(1) else {
            return;
        };
        let counts = if source.ends_with(" lua") {
            &mut self.lua
        } else {
            &mut self.client
        };
        *counts.entry(name.to_ascii_lowercase()).or_default() += 1;
    }

    /// "13.4 client cmds/task (evalsha 11.0, ...) + 33.0 in Lua scripts".
    pub(crate) fn summary(&self, tasks: usize, top: usize) -> String {
        let per_task = |n: u64| n as f64 / tasks.max(1) as f64;
        let mut client: Vec<(&String, &u64)> = self.client.iter().collect();
        client.sort_by(|a, b| b.1.cmp(a.1));
        let listed: Vec<String> = client
            .iter()
            .filter(|(_, n)| per_task(**n) >= 0.05)
            .take(top)
            .map(|(name, n)| format!("{name} {:.1}", per_task(**n)))
            .collect();
        format!(
            "{:.1} client Redis cmds/task ({}) + {:.1} run by scripts",
            per_task(self.client.values().sum()),
            listed.join(", "),
            per_task(self.lua.values().sum())
        )
    }
}

/// A `MONITOR` connection counting in the background.
#[derive(Debug)]
pub(crate) struct Monitor {
    counts: Arc<Mutex<Counts>>,
    task: JoinHandle<()>,
}

impl Monitor {
    /// Starts monitoring the server of `client` for keys under `prefix`.
    ///
    /// # Errors
    /// A Redis error.
    pub(crate) async fn start(client: &redis::Client, prefix: &str) -> redis::RedisResult<Self> {
        let monitor = client.get_async_monitor().await?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let task = tokio::spawn({
            let (counts, prefix) = (Arc::clone(&counts), prefix.to_owned());
            async move {
                let mut lines = monitor.into_on_message::<String>();
                while let Some(line) = lines.next().await {
                    counts.lock().unwrap_or_else(|e| e.into_inner()).record(&line, &prefix);
                }
            }
        });
        Ok(Self { counts, task })
    }

    /// Lets the last lines arrive, then stops and returns the counts.
    pub(crate) async fn finish(self) -> Counts {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.task.abort();
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_into_client_and_script_commands() {
        let mut counts = Counts::default();
        let p = "dtask-bench:abc:";
        counts.record(
            r#"1795.1 [0 127.0.0.1:5000] "EVALSHA" "bde4" "1" "dtask-bench:abc:progress:x""#,
            p,
        );
        counts.record(
            r#"1795.2 [0 lua] "HSET" "dtask-bench:abc:progress:x" "status" "done""#,
            p,
        );
        counts.record(r#"1795.3 [0 127.0.0.1:5001] "XADD" "dtask-bench:other:q" "*""#, p);
        assert_eq!(counts.client.get("evalsha"), Some(&1));
        assert_eq!(counts.lua.get("hset"), Some(&1));
        assert_eq!(counts.client.len() + counts.lua.len(), 2);
        assert_eq!(
            counts.summary(1, 5),
            "1.0 client Redis cmds/task (evalsha 1.0) + 1.0 run by scripts"
        );
    }
}
