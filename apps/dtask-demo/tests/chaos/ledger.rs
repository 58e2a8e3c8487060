//! Reading the side-effect ledger the chaos nodes keep in Redis (see
//! `examples/chaos_node.rs`) and what it says about each task.

use std::collections::{BTreeMap, HashMap};

use redis::aio::MultiplexedConnection;

/// The Worker steps of ChaosTask, in order.
pub(crate) const WORKER_STEPS: [&str; 3] = ["Transform", "Index", "Publish"];

/// One execution of a step's body on one worker.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) step: String,
    pub(crate) pid: u32,
    pub(crate) attempt: u32,
    /// Wall clock, ms since the epoch.
    pub(crate) start: u64,
    /// When the body reached its end; `None`: it never did (killed).
    pub(crate) end: Option<u64>,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} attempt {} on {} from {}",
            self.step, self.attempt, self.pid, self.start
        )?;
        match self.end {
            Some(end) => write!(f, " to {end}"),
            None => write!(f, ", never ended"),
        }
    }
}

/// The ledger of one run, for its tasks.
pub(crate) struct Ledger {
    /// Bodies that reached their end, by `{task}/{step}` (the idempotency
    /// key).
    pub(crate) executions: HashMap<String, u64>,
    /// Effects applied, by `{task}/{step}`.
    pub(crate) applied: HashMap<String, u64>,
    /// Compensations run, by `{task}/{step}`.
    pub(crate) compensations: HashMap<String, u64>,
    /// Every run, by task id.
    pub(crate) runs: BTreeMap<String, Vec<Run>>,
}

impl Ledger {
    /// Reads the ledger under `prefix` (`{key_prefix}ledger:`) for `tasks`.
    pub(crate) async fn read(redis: &mut MultiplexedConnection, prefix: &str, tasks: &[String]) -> Self {
        let mut hash = async |name: &str| -> HashMap<String, u64> {
            redis::cmd("HGETALL")
                .arg(format!("{prefix}{name}"))
                .query_async(redis)
                .await
                .expect("the ledger is readable")
        };
        let executions = hash("executions").await;
        let applied = hash("applied").await;
        let compensations = hash("compensations").await;
        let mut pipe = redis::pipe();
        for task in tasks {
            pipe.cmd("LRANGE").arg(format!("{prefix}runs:{task}")).arg(0).arg(-1);
        }
        let lists: Vec<Vec<String>> = pipe.query_async(redis).await.expect("the runs are readable");
        let runs = tasks
            .iter()
            .zip(lists)
            .map(|(task, records)| (task.clone(), parse_runs(&records)))
            .collect();
        Self {
            executions,
            applied,
            compensations,
            runs,
        }
    }
}

/// Pairs `start STEP PID ATTEMPT T` with `end STEP PID ATTEMPT T_START T_END`.
fn parse_runs(records: &[String]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for record in records {
        let fields: Vec<&str> = record.split(' ').collect();
        let number = |i: usize| -> u64 {
            fields[i]
                .parse()
                .unwrap_or_else(|_| panic!("a bad ledger record: {record}"))
        };
        match fields[0] {
            "start" => runs.push(Run {
                step: fields[1].to_owned(),
                pid: number(2) as u32,
                attempt: number(3) as u32,
                start: number(4),
                end: None,
            }),
            "end" => {
                let (pid, start) = (number(2) as u32, number(4));
                let run = runs
                    .iter_mut()
                    .find(|r| r.step == fields[1] && r.pid == pid && r.start == start)
                    .unwrap_or_else(|| panic!("an end with no start: {record}"));
                run.end = Some(number(5));
            }
            _ => panic!("a bad ledger record: {record}"),
        }
    }
    runs
}

/// What the runs of one task say about the kills.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TaskTiming {
    /// A kill touched it: a run never ended, a step's body ran more than
    /// once, or its steps ran on more than one worker.
    pub(crate) hit: bool,
    /// From its first step's start to its last step's end, less the time
    /// of the runs that counted (each step's last finished run): the time
    /// it spent not doing useful work on a worker (lost work, waiting for
    /// a dead worker's lock, redelivery, saving snapshots).
    pub(crate) stall_ms: u64,
    /// The longest wait from a kill that interrupted one of its steps to
    /// the start of that step's next run.
    pub(crate) resume_gap_ms: Option<u64>,
    /// Pairs of runs of one step that were running at the same time.
    pub(crate) overlaps: usize,
}

/// Judges one task's runs; `kills` maps a killed worker's pid to when it
/// was dead.
pub(crate) fn timing(runs: &[Run], kills: &HashMap<u32, u64>) -> TaskTiming {
    let mut timing = TaskTiming::default();
    let Some(first_start) = runs.iter().map(|r| r.start).min() else {
        return timing;
    };
    let last_end = runs.iter().filter_map(|r| r.end).max().unwrap_or(first_start);
    let mut useful = 0;
    let mut pids: Vec<u32> = runs.iter().map(|r| r.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    timing.hit = pids.len() > 1;
    for step in WORKER_STEPS {
        let mut mine: Vec<&Run> = runs.iter().filter(|r| r.step == step).collect();
        mine.sort_by_key(|r| r.start);
        timing.hit |= mine.len() > 1;
        if let Some(last) = mine.iter().rev().find(|r| r.end.is_some()) {
            useful += last.end.unwrap_or(last.start) - last.start;
        }
        for (i, run) in mine.iter().enumerate() {
            let until = run.end.or_else(|| kills.get(&run.pid).copied());
            if let Some(until) = until {
                timing.overlaps += mine[i + 1..].iter().filter(|other| other.start < until).count();
            }
            if run.end.is_none()
                && let (Some(killed), Some(next)) = (kills.get(&run.pid), mine.get(i + 1))
            {
                let gap = next.start.saturating_sub(*killed);
                timing.resume_gap_ms = Some(timing.resume_gap_ms.map_or(gap, |g| g.max(gap)));
            }
        }
    }
    timing.stall_ms = (last_end - first_start).saturating_sub(useful);
    timing
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{parse_runs, timing};

    fn records(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|line| (*line).to_owned()).collect()
    }

    #[test]
    fn a_calm_task_has_no_stall_beyond_its_gaps() {
        let runs = parse_runs(&records(&[
            "start Transform 7 1 1000",
            "end Transform 7 1 1000 1200",
            "start Index 7 1 1205",
            "end Index 7 1 1205 1400",
            "start Publish 7 1 1402",
            "end Publish 7 1 1402 1500",
        ]));
        let judged = timing(&runs, &HashMap::new());
        assert!(!judged.hit);
        assert_eq!(judged.stall_ms, 500 - (200 + 195 + 98));
        assert_eq!(judged.resume_gap_ms, None);
        assert_eq!(judged.overlaps, 0);
    }

    #[test]
    fn a_killed_run_counts_its_lost_work_and_the_wait_for_the_next_run() {
        let runs = parse_runs(&records(&[
            "start Transform 7 1 1000",
            "end Transform 7 1 1000 1200",
            "start Index 7 1 1200",
            // worker 7 dies at 1300; worker 9 takes the task at 4300
            "start Index 9 2 4300",
            "end Index 9 2 4300 4500",
            "start Publish 9 1 4500",
            "end Publish 9 1 4500 4600",
        ]));
        let judged = timing(&runs, &HashMap::from([(7, 1300)]));
        assert!(judged.hit);
        assert_eq!(judged.stall_ms, 3600 - (200 + 200 + 100));
        assert_eq!(judged.resume_gap_ms, Some(3000));
        assert_eq!(judged.overlaps, 0);
    }

    #[test]
    fn two_runs_of_one_step_at_once_are_an_overlap() {
        let runs = parse_runs(&records(&[
            "start Transform 7 1 1000",
            "start Transform 9 2 1100",
            "end Transform 7 1 1000 1300",
            "end Transform 9 2 1100 1350",
        ]));
        assert_eq!(timing(&runs, &HashMap::new()).overlaps, 1);
    }
}
