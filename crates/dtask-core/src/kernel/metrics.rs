//! The kernel's metrics, through the `metrics` facade: the application
//! installs a recorder (`dtask-telemetry`'s Prometheus one) before it
//! builds the host; without one every update is a no-op.
//!
//! Every handle is registered once, when the host is built, for each task,
//! step and queue the host declares (a task queue, or the member queue of
//! a distributed group's): labels are bounded by what is declared (never a
//! task id), and the hot path only bumps atomics.
//!
//! | metric | labels |
//! |---|---|
//! | `dtask_tasks_submitted_total` | `task` |
//! | `dtask_tasks_ended_total` | `task`, `status` |
//! | `dtask_task_duration_seconds` (submit to end) | `task`, `status` |
//! | `dtask_step_attempts_total` | `task`, `step`, `outcome` (`completed`, `failed`, `cancelled`, `timedOut`) |
//! | `dtask_step_duration_seconds` (one attempt) | `task`, `step`, `outcome` |
//! | `dtask_step_retries_total` | `task`, `step` |
//! | `dtask_compensations_total` | `task`, `step`, `outcome` (`compensated`, `failed`) |
//! | `dtask_dead_letters_total` | `queue` |
//! | `dtask_tasks_in_flight` (gauge, this worker) | `queue` |
//! | `dtask_lock_wait_seconds` (taking a task's lock) | `queue` |
//! | `dtask_lock_contended_total` (the lock was held by another) | `queue` |
//! | `dtask_queue_waiting` (gauge, sampled every 5 s; the same in every process: take the max) | `queue` |
//! | `dtask_queue_unsettled` (gauge, as above, where the backend tells) | `queue` |

use std::collections::HashMap;
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::progress::TaskStatus;
use crate::task::{StepErrorKind, TaskDefinition};

/// The terminal statuses, in the order of [`TaskMetrics::ended`].
const ENDINGS: [TaskStatus; 5] = [
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Compensated,
    TaskStatus::Cancelled,
    TaskStatus::CompensationFailed,
];

/// Attempt outcomes, in the order of [`StepMetrics::attempts`].
const OUTCOMES: [&str; 4] = ["completed", "failed", "cancelled", "timedOut"];

/// The metrics of a host, registered for what it declares.
#[derive(Default)]
pub(crate) struct Metrics {
    tasks: HashMap<&'static str, TaskMetrics>,
    queues: HashMap<String, QueueMetrics>,
}

impl Metrics {
    /// Registers the metrics of `definitions`, served from `queues`, with
    /// the installed recorder.
    pub(crate) fn register<'a>(definitions: impl IntoIterator<Item = &'a TaskDefinition>, queues: &[String]) -> Self {
        describe();
        let mut metrics = Self::default();
        for def in definitions {
            metrics.tasks.insert(def.name, TaskMetrics::new(def));
        }
        for queue in queues {
            metrics.queues.insert(queue.clone(), QueueMetrics::new(queue));
        }
        metrics
    }

    pub(crate) fn task(&self, name: &str) -> Option<&TaskMetrics> {
        self.tasks.get(name)
    }

    pub(crate) fn queue(&self, name: &str) -> Option<&QueueMetrics> {
        self.queues.get(name)
    }
}

/// One task's metrics.
pub(crate) struct TaskMetrics {
    submitted: Counter,
    ended: [(Counter, Histogram); ENDINGS.len()],
    steps: Vec<StepMetrics>,
}

impl TaskMetrics {
    fn new(def: &TaskDefinition) -> Self {
        let task = def.name;
        Self {
            submitted: counter!("dtask_tasks_submitted_total", "task" => task),
            ended: ENDINGS.map(|status| {
                let status = status.as_str();
                (
                    counter!("dtask_tasks_ended_total", "task" => task, "status" => status),
                    histogram!("dtask_task_duration_seconds", "task" => task, "status" => status),
                )
            }),
            steps: def.steps.iter().map(|step| StepMetrics::new(task, step.name)).collect(),
        }
    }

    pub(crate) fn submitted(&self) {
        self.submitted.increment(1);
    }

    /// The task ended in `status` after `took` (from its submission).
    pub(crate) fn ended(&self, status: TaskStatus, took: Duration) {
        if let Some(i) = ENDINGS.iter().position(|s| *s == status) {
            self.ended[i].0.increment(1);
            self.ended[i].1.record(took.as_secs_f64());
        }
    }

    pub(crate) fn step(&self, index: usize) -> Option<&StepMetrics> {
        self.steps.get(index)
    }
}

/// One step's metrics.
pub(crate) struct StepMetrics {
    attempts: [(Counter, Histogram); OUTCOMES.len()],
    retries: Counter,
    compensated: Counter,
    compensation_failed: Counter,
}

impl StepMetrics {
    fn new(task: &'static str, step: &'static str) -> Self {
        Self {
            attempts: OUTCOMES.map(|outcome| {
                (
                    counter!("dtask_step_attempts_total", "task" => task, "step" => step, "outcome" => outcome),
                    histogram!("dtask_step_duration_seconds", "task" => task, "step" => step, "outcome" => outcome),
                )
            }),
            retries: counter!("dtask_step_retries_total", "task" => task, "step" => step),
            compensated: counter!("dtask_compensations_total", "task" => task, "step" => step, "outcome" => "compensated"),
            compensation_failed: counter!("dtask_compensations_total", "task" => task, "step" => step, "outcome" => "failed"),
        }
    }

    /// An attempt ended (`failure`: how it failed) after `took`.
    pub(crate) fn attempt(&self, failure: Option<StepErrorKind>, took: Duration) {
        let i = match failure {
            None => 0,
            Some(StepErrorKind::Transient | StepErrorKind::Permanent) => 1,
            Some(StepErrorKind::Cancelled) => 2,
            Some(StepErrorKind::TimedOut) => 3,
        };
        self.attempts[i].0.increment(1);
        self.attempts[i].1.record(took.as_secs_f64());
    }

    pub(crate) fn retried(&self) {
        self.retries.increment(1);
    }

    pub(crate) fn compensation(&self, succeeded: bool) {
        match succeeded {
            true => self.compensated.increment(1),
            false => self.compensation_failed.increment(1),
        }
    }
}

/// One queue's metrics, as this worker sees it.
pub(crate) struct QueueMetrics {
    pub(crate) waiting: Gauge,
    pub(crate) unsettled: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) dead_letters: Counter,
    pub(crate) lock_wait: Histogram,
    pub(crate) lock_contended: Counter,
}

impl QueueMetrics {
    fn new(queue: &str) -> Self {
        let queue = queue.to_owned();
        Self {
            waiting: gauge!("dtask_queue_waiting", "queue" => queue.clone()),
            unsettled: gauge!("dtask_queue_unsettled", "queue" => queue.clone()),
            in_flight: gauge!("dtask_tasks_in_flight", "queue" => queue.clone()),
            dead_letters: counter!("dtask_dead_letters_total", "queue" => queue.clone()),
            lock_wait: histogram!("dtask_lock_wait_seconds", "queue" => queue.clone()),
            lock_contended: counter!("dtask_lock_contended_total", "queue" => queue),
        }
    }
}

/// Describes every metric to the installed recorder (Prometheus's `HELP`).
fn describe() {
    describe_counter!("dtask_tasks_submitted_total", "Tasks submitted through this host.");
    describe_counter!(
        "dtask_tasks_ended_total",
        "Tasks that ended in this host, by final status."
    );
    describe_histogram!(
        "dtask_task_duration_seconds",
        Unit::Seconds,
        "Time from a task's submission to its end."
    );
    describe_counter!(
        "dtask_step_attempts_total",
        "Step attempts run in this host, by outcome."
    );
    describe_histogram!(
        "dtask_step_duration_seconds",
        Unit::Seconds,
        "Duration of one step attempt."
    );
    describe_counter!(
        "dtask_step_retries_total",
        "Step attempts that failed and will be retried."
    );
    describe_counter!(
        "dtask_compensations_total",
        "Compensations of completed steps, by outcome."
    );
    describe_counter!(
        "dtask_dead_letters_total",
        "Messages this worker moved to its queue's dead letters."
    );
    describe_gauge!("dtask_tasks_in_flight", "Deliveries this worker holds now.");
    describe_gauge!(
        "dtask_queue_waiting",
        "Messages waiting in the queue, as its backend tells."
    );
    describe_gauge!(
        "dtask_queue_unsettled",
        "Messages delivered and not settled yet, as the queue's backend tells."
    );
    describe_histogram!("dtask_lock_wait_seconds", Unit::Seconds, "Time to take a task's lock.");
    describe_counter!(
        "dtask_lock_contended_total",
        "Deliveries that found their task's lock held by another."
    );
}
