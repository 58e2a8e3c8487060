//! What a chaos run measured, how it is counted, and which figures must
//! be zero.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use dtask::reconcile::ReconcileMode;
use dtask::{TaskId, TaskProgress, TaskStatus};

use crate::ledger::{self, Ledger, TaskTiming, WORKER_STEPS};
use crate::services::{EFFECT_BUCKET, INPUT_BUCKET, Services};

/// A worker killed, and when it was gone (ms since the epoch).
pub(crate) struct Kill {
    pub(crate) pid: u32,
    pub(crate) at_ms: u64,
}

/// What one chaos run measured.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    submitted: usize,
    completed: usize,
    /// Tasks that ended otherwise, with their status and error.
    not_completed: Vec<String>,
    /// Effects applied more than once, summed over the steps.
    duplicated_effects: u64,
    /// Steps of completed tasks whose effect is missing.
    missing_effects: usize,
    /// Bodies that ran to their end more than once, summed.
    re_executions: u64,
    compensations: u64,
    /// Pairs of runs of one step running at the same time.
    overlaps: usize,
    /// Objects missing from, or extra in, a completed task's set.
    object_mismatches: Vec<String>,
    /// Objects of this run's tasks the reconciliation deleted.
    orphans_reconciled: usize,
    /// Objects of other (earlier) runs' tasks it deleted.
    stale_reconciled: usize,
    failed_deletions: usize,
    /// Objects of tasks that did not complete, left after reconciliation.
    orphans: usize,
    kills: usize,
    /// Tasks a kill touched.
    interrupted_tasks: usize,
    longest_kill_delay_ms: u64,
    longest_resume_gap_ms: u64,
    median_stall_ms: u64,
    run: Duration,
    /// The kill schedule's `CHAOS_SEED`.
    seed: u64,
}

impl Figures {
    /// The figures of a run of `run` that submitted `submitted` tasks and
    /// killed `kills` workers, before counting.
    pub(crate) fn new(submitted: usize, kills: usize, run: Duration, seed: u64) -> Self {
        Self {
            submitted,
            kills,
            run,
            seed,
            ..Self::default()
        }
    }

    /// The one summary line.
    pub(crate) fn summary(&self) -> String {
        format!(
            "chaos: submitted={} completed={} duplicated_effects={} re_executions={} orphans={} \
             longest_kill_delay_ms={} kills={} (interrupted_tasks={} longest_resume_gap_ms={} \
             median_stall_ms={} overlaps={} missing_effects={} compensations={} orphans_reconciled={} \
             stale_reconciled={} run_s={:.1} seed={})",
            self.submitted,
            self.completed,
            self.duplicated_effects,
            self.re_executions,
            self.orphans,
            self.longest_kill_delay_ms,
            self.kills,
            self.interrupted_tasks,
            self.longest_resume_gap_ms,
            self.median_stall_ms,
            self.overlaps,
            self.missing_effects,
            self.compensations,
            self.orphans_reconciled,
            self.stale_reconciled,
            self.run.as_secs_f64(),
            self.seed,
        )
    }

    /// Every failed promise, one per line.
    pub(crate) fn check(&self, expected_tasks: usize) -> Result<(), String> {
        let mut failures = Vec::new();
        if self.completed != self.submitted || self.submitted != expected_tasks {
            failures.push(format!(
                "{} of {} tasks completed; the others: {:#?}",
                self.completed, self.submitted, self.not_completed
            ));
        }
        let zero = [
            ("duplicated side effects", self.duplicated_effects as usize),
            ("missing side effects", self.missing_effects),
            ("compensations", self.compensations as usize),
            ("overlapping runs of one step", self.overlaps),
            ("orphaned objects after reconciliation", self.orphans),
            ("failed deletions", self.failed_deletions),
        ];
        for (what, count) in zero {
            if count != 0 {
                failures.push(format!("{count} {what}"));
            }
        }
        if !self.object_mismatches.is_empty() {
            failures.push(format!("objects not as expected: {:#?}", self.object_mismatches));
        }
        if self.kills < 2 || self.interrupted_tasks == 0 {
            failures.push(format!(
                "the chaos did not bite: {} kills, {} interrupted tasks",
                self.kills, self.interrupted_tasks
            ));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    }

    /// How the tasks ended.
    pub(crate) fn count_outcomes(&mut self, ended: &HashMap<TaskId, TaskProgress>) {
        for (id, progress) in ended {
            if progress.status == TaskStatus::Completed {
                self.completed += 1;
            } else {
                self.not_completed
                    .push(format!("{id}: {:?} {:?}", progress.status, progress.error));
            }
        }
    }

    /// The ledger's counts, per Worker step of each task.
    pub(crate) fn count_effects(&mut self, ended: &HashMap<TaskId, TaskProgress>, ledger: &Ledger) {
        for (id, progress) in ended {
            for step in WORKER_STEPS {
                let key = format!("{id}/{step}");
                let applied = ledger.applied.get(&key).copied().unwrap_or(0);
                self.duplicated_effects += applied.saturating_sub(1);
                if progress.status == TaskStatus::Completed && applied == 0 {
                    self.missing_effects += 1;
                }
                let executions = ledger.executions.get(&key).copied().unwrap_or(0);
                self.re_executions += executions.saturating_sub(1);
            }
        }
        self.compensations = ledger.compensations.values().sum();
    }

    /// The delays the kills added, and overlapping runs.
    pub(crate) fn count_timings(&mut self, ledger: &Ledger, kills: &[Kill]) {
        let killed: HashMap<u32, u64> = kills.iter().map(|k| (k.pid, k.at_ms)).collect();
        let timings: Vec<TaskTiming> = ledger.runs.values().map(|runs| ledger::timing(runs, &killed)).collect();
        let mut calm: Vec<u64> = timings.iter().filter(|t| !t.hit).map(|t| t.stall_ms).collect();
        calm.sort_unstable();
        self.median_stall_ms = calm.get(calm.len() / 2).copied().unwrap_or(0);
        for timing in timings.iter().filter(|t| t.hit) {
            self.interrupted_tasks += 1;
            self.longest_kill_delay_ms = self.longest_kill_delay_ms.max(timing.stall_ms);
            self.longest_resume_gap_ms = self.longest_resume_gap_ms.max(timing.resume_gap_ms.unwrap_or(0));
        }
        self.overlaps = timings.iter().map(|t| t.overlaps).sum();
    }

    /// Each completed task holds its upload and one object per Worker step.
    pub(crate) async fn count_objects(&mut self, ended: &HashMap<TaskId, TaskProgress>, services: &Services) {
        let by_task = services.objects_by_task().await;
        for (id, progress) in ended {
            if progress.status != TaskStatus::Completed {
                continue;
            }
            let mut expected: Vec<String> = WORKER_STEPS
                .iter()
                .map(|step| format!("{EFFECT_BUCKET}/{id}/{step}/effect.txt"))
                .collect();
            let mut found: Vec<String> = Vec::new();
            for (bucket, key) in by_task.get(&id.to_string()).into_iter().flatten() {
                if bucket == INPUT_BUCKET && key.starts_with(&format!("{id}/ReceiveInput/")) {
                    expected.push(format!("{bucket}/{key}"));
                }
                found.push(format!("{bucket}/{key}"));
            }
            expected.sort();
            found.sort();
            if expected.len() != WORKER_STEPS.len() + 1 || found != expected {
                self.object_mismatches
                    .push(format!("{id}: found {found:?}, expected {expected:?}"));
            }
        }
    }

    /// Reconciles the buckets (grace 0), then counts the objects left whose
    /// task did not complete: a second, dry, run must find none, and none
    /// of this run's tasks that did not complete may own an object.
    pub(crate) async fn reconcile(&mut self, ended: &HashMap<TaskId, TaskProgress>, services: &Services) {
        let reconciler = services.reconciler();
        let report = reconciler
            .run(ReconcileMode::Delete)
            .await
            .expect("the reconciliation runs");
        let ours: HashSet<TaskId> = ended.keys().copied().collect();
        let (mine, stale): (Vec<_>, Vec<_>) = report.orphans.iter().partition(|o| ours.contains(&o.task_id));
        self.orphans_reconciled = mine.len();
        self.stale_reconciled = stale.len();
        self.failed_deletions = report.failed.len();
        let again = reconciler.run(ReconcileMode::DryRun).await.expect("the dry run runs");
        let completed: BTreeMap<String, bool> = ended
            .iter()
            .map(|(id, p)| (id.to_string(), p.status == TaskStatus::Completed))
            .collect();
        let left_of_ours: usize = services
            .objects_by_task()
            .await
            .iter()
            .filter(|(task, _)| completed.get(*task) == Some(&false))
            .map(|(_, objects)| objects.len())
            .sum();
        self.orphans = again.orphans.len() + left_of_ours;
    }
}
