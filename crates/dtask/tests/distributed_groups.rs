//! Distributed parallel groups (`#[parallel_group(distribute)]`): each
//! member runs from a message of its own on whichever worker takes it, and
//! the worker running the saga records the members' outcomes (the fan-in).
//!
//! The worker hosts here share in-memory backends (standing in for
//! RabbitMQ, Redis and S3) and each takes one member at a time; asked to,
//! `RenderA` and `RenderB` meet at a barrier, so a run can only complete
//! with the two on different workers, ending at the same instant. The same
//! race runs on RabbitMQ, Redis Streams and PostgreSQL (with Redis or
//! PostgreSQL for the state, progress and locks).

mod support;

use std::sync::Arc;
use std::time::Duration;

use dtask::prelude::*;
use dtask::testing::TestHost;
use dtask::{CancelOutcome, GroupDistribution, Host, KernelSettings, Mode, StepStatus, TaskId, TaskProgress};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use support::{Journal, shared_infrastructure};

/// What the test asks of a FanOut run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanRequest {
    /// `RenderA` and `RenderB` wait for each other before they finish.
    pub meet: bool,
    /// `RenderB` waits for the test to open its gate.
    pub hold_b: bool,
    /// `RenderB` fails for good after meeting `RenderA`.
    pub fail_b: bool,
    /// `RenderB` waits for its cancellation instead of finishing.
    pub block_b: bool,
    /// Whether `RenderC` runs.
    pub with_c: bool,
}

#[dtask::task(
    name = "FanOut",
    request = FanRequest,
    response = Vec<String>,
    queue = "fan-out",
    max_retries = 0,
    timeout_secs = 60,
    mode = Distributed,
    cancellable
)]
#[custom_step(Prepare, order = 1, output = u32)]
#[parallel_group(Renders, order = 2, distribute)]
#[custom_step(RenderA, order = 2, group = Renders, inputs(prepare), output = String)]
#[custom_step(RenderB, order = 2, group = Renders, inputs(prepare), output = String)]
#[custom_step(RenderC, order = 2, group = Renders, inputs(prepare), output = String)]
#[condition(RenderC, request.with_c)]
#[compensation(RenderA)]
#[compensation(RenderB)]
#[compensation(RenderC)]
#[custom_step(Collect, order = 3, inputs(render_a, render_b, render_c), output = Vec<String>)]
/// Prepare, then three members of a distributed group, then Collect.
#[derive(Debug, Clone)]
pub struct FanOut {
    journal: Journal,
    /// `RenderA` and `RenderB` wait here for each other.
    meet: Arc<tokio::sync::Barrier>,
    /// `RenderB` waits here when asked to hold.
    gate: Arc<tokio::sync::Semaphore>,
}

impl FanOut {
    fn new(journal: &Journal) -> Self {
        Self {
            journal: journal.clone(),
            meet: Arc::new(tokio::sync::Barrier::new(2)),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    async fn meet(&self, name: &str, request: &FanRequest) -> Result<(), StepError> {
        if !request.meet {
            return Ok(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.meet.wait())
            .await
            .map(drop)
            .map_err(|_| StepError::permanent(format!("{name} never ran alongside its sibling")))
    }
}

impl fan_out::Steps for FanOut {
    async fn prepare(&self, _cx: &StepContext, _input: fan_out::PrepareInput<'_>) -> Result<u32, StepError> {
        self.journal.push("run Prepare");
        Ok(7)
    }

    async fn render_a(&self, _cx: &StepContext, input: fan_out::RenderAInput<'_>) -> Result<String, StepError> {
        self.meet("RenderA", input.request).await?;
        self.journal.push("run RenderA");
        Ok(format!("a{}", input.prepare))
    }

    async fn render_b(&self, cx: &StepContext, input: fan_out::RenderBInput<'_>) -> Result<String, StepError> {
        self.meet("RenderB", input.request).await?;
        self.journal.push("run RenderB");
        if input.request.hold_b {
            tokio::select! {
                permit = self.gate.acquire() => drop(permit),
                () = cx.cancelled() => return Err(StepError::cancelled()),
            }
        }
        if input.request.block_b {
            cx.report_progress(0.5, Some("waiting to be cancelled".to_owned()));
            cx.cancelled().await;
            self.journal.push("RenderB saw its token fire");
            return Err(StepError::cancelled());
        }
        if input.request.fail_b {
            return Err(StepError::permanent("RenderB's encoder crashed"));
        }
        Ok(format!("b{}", input.prepare))
    }

    async fn render_c(&self, _cx: &StepContext, input: fan_out::RenderCInput<'_>) -> Result<String, StepError> {
        self.journal.push("run RenderC");
        Ok(format!("c{}", input.prepare))
    }

    async fn collect(&self, _cx: &StepContext, input: fan_out::CollectInput<'_>) -> Result<Vec<String>, StepError> {
        self.journal.push("run Collect");
        let mut all = vec![input.render_a.clone(), input.render_b.clone()];
        all.extend(input.render_c.cloned());
        Ok(all)
    }

    async fn compensate_render_a(&self, _cx: &StepContext, _r: &FanRequest, _d: &String) -> Result<(), StepError> {
        self.journal.push("undo RenderA");
        Ok(())
    }

    async fn compensate_render_b(&self, _cx: &StepContext, _r: &FanRequest, _d: &String) -> Result<(), StepError> {
        self.journal.push("undo RenderB");
        Ok(())
    }

    async fn compensate_render_c(&self, _cx: &StepContext, _r: &FanRequest, _d: &String) -> Result<(), StepError> {
        self.journal.push("undo RenderC");
        Ok(())
    }

    fn response(&self, outputs: fan_out::Outputs<'_>) -> Result<Vec<String>, StepError> {
        Ok(outputs.collect.clone())
    }
}

/// An API host and `workers` worker hosts (`w1`, `w2`, ...), each taking
/// one task and one member at a time, sharing one set of backends, one
/// barrier and one gate; and the task they share.
fn cluster(journal: &Journal, workers: usize) -> (Host, Vec<Host>, FanOut) {
    let infra = shared_infrastructure();
    let task = FanOut::new(journal);
    let api = Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infra.clone())
        .register(task.clone())
        .run_workers(false)
        .build()
        .unwrap();
    let workers = (1..=workers)
        .map(|n| {
            Host::builder()
                .mode(Mode::Distributed)
                .infrastructure(infra.clone())
                .register(task.clone())
                .worker_concurrency(1)
                .node_name(format!("w{n}"))
                .kernel_settings(KernelSettings {
                    cancel_grace: Duration::from_millis(100),
                    ..KernelSettings::default()
                })
                .shutdown_grace(Duration::from_millis(200))
                .build()
                .unwrap()
        })
        .collect();
    (api, workers, task)
}

/// Submits `request` through `api` and waits for the task's end.
async fn finish(api: &Host, request: FanRequest) -> dtask::TaskOutcome<Vec<String>> {
    api.submit::<FanOut>(request).await.unwrap().wait().await.unwrap()
}

fn step<'p>(progress: &'p TaskProgress, name: &str) -> &'p dtask::StepState {
    progress.steps.iter().find(|s| s.name == name).unwrap()
}

#[tokio::test]
async fn members_run_on_different_workers_and_the_saga_goes_on_once_all_ended() {
    let journal = Journal::default();
    let (api, _workers, _) = cluster(&journal, 3);
    let outcome = finish(
        &api,
        FanRequest {
            meet: true,
            with_c: true,
            ..FanRequest::default()
        },
    )
    .await;

    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    assert_eq!(outcome.response.unwrap(), ["a7", "b7", "c7"]);
    let progress = &outcome.progress;
    let (a, b) = (step(progress, "RenderA"), step(progress, "RenderB"));
    assert!(a.worker.is_some() && b.worker.is_some(), "each member names its worker");
    assert_ne!(a.worker, b.worker, "the two members met, so they ran on two workers");
    for name in ["RenderA", "RenderB", "RenderC"] {
        let member = step(progress, name);
        assert_eq!(member.status, StepStatus::Completed, "{name}");
        assert_eq!(member.attempts, 1, "{name} ran once");
        assert_eq!(journal.count(&format!("run {name}")), 1, "{name} ran once");
    }
    assert_eq!(journal.count("run Collect"), 1);
    let mut orders: Vec<_> = progress.steps.iter().filter_map(|s| s.completion_order).collect();
    orders.sort_unstable();
    assert_eq!(orders, [1, 2, 3, 4, 5], "each completion recorded once");
}

#[tokio::test]
async fn members_ending_together_are_each_recorded_once_run_after_run() {
    let journal = Journal::default();
    let (api, _workers, _) = cluster(&journal, 2);
    race(&api, &journal, 15).await;
}

/// Runs `runs` tasks whose RenderA and RenderB meet, one after the other:
/// each completes with both outputs, the two on different workers, and
/// each member and the fan-in ran once per run.
async fn race(api: &Host, journal: &Journal, runs: usize) {
    for run in 1..=runs {
        let outcome = finish(
            api,
            FanRequest {
                meet: true,
                ..FanRequest::default()
            },
        )
        .await;
        let progress = &outcome.progress;
        assert_eq!(
            outcome.status(),
            TaskStatus::Completed,
            "run {run}: {:?}",
            progress.error
        );
        assert_eq!(outcome.response.unwrap(), ["a7", "b7"], "run {run}");
        assert_eq!(progress.completed_steps, 5, "run {run}");
        assert_eq!(step(progress, "RenderC").status, StepStatus::Skipped, "run {run}");
        let (a, b) = (step(progress, "RenderA"), step(progress, "RenderB"));
        assert_ne!(a.worker, b.worker, "run {run}: the members met on two workers");
    }
    assert_eq!(journal.count("run RenderA"), runs);
    assert_eq!(journal.count("run RenderB"), runs);
    assert_eq!(journal.count("run Collect"), runs, "one fan-in per run");
}

#[tokio::test]
async fn a_failed_member_compensates_its_completed_siblings_only() {
    let journal = Journal::default();
    let (api, _workers, _) = cluster(&journal, 2);
    let outcome = finish(
        &api,
        FanRequest {
            meet: true,
            fail_b: true,
            ..FanRequest::default()
        },
    )
    .await;

    assert_eq!(outcome.status(), TaskStatus::Compensated);
    let error = outcome.progress.error.clone().unwrap_or_default();
    assert!(error.contains("RenderB's encoder crashed"), "{error}");
    assert_eq!(journal.count("undo RenderA"), 1, "the completed sibling is undone");
    assert_eq!(journal.count("undo RenderB"), 0, "the failed member is not");
    assert_eq!(journal.count("undo RenderC"), 0, "the skipped member never is");
    assert_eq!(journal.count("run Collect"), 0);
    let statuses: Vec<_> = ["RenderA", "RenderB", "RenderC"]
        .map(|name| step(&outcome.progress, name).status)
        .to_vec();
    assert_eq!(
        statuses,
        [StepStatus::Compensated, StepStatus::Failed, StepStatus::Skipped]
    );
}

#[tokio::test]
async fn cancelling_the_task_stops_a_member_running_on_another_worker() {
    let journal = Journal::default();
    let (api, workers, _) = cluster(&journal, 2);
    let handle = api
        .submit::<FanOut>(FanRequest {
            meet: true,
            block_b: true,
            ..FanRequest::default()
        })
        .await
        .unwrap();
    let mut stream = handle.stream().await.unwrap();
    while let Some(progress) = stream.next().await {
        let b = step(&progress, "RenderB");
        if b.fraction == Some(0.5) && step(&progress, "RenderA").status == StepStatus::Completed {
            break;
        }
    }
    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::Requested);
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Cancelled);
    assert_eq!(journal.count("RenderB saw its token fire"), 1);
    assert_eq!(journal.count("undo RenderA"), 1, "the completed member is undone");
    assert_eq!(step(&outcome.progress, "RenderB").status, StepStatus::Cancelled);
    for worker in workers {
        worker.shutdown().await;
    }
}

#[tokio::test]
async fn in_process_a_distributed_group_runs_through_the_in_memory_queue() {
    let journal = Journal::default();
    let host = TestHost::new(FanOut::new(&journal));
    let outcome = host
        .run::<FanOut>(FanRequest {
            meet: true,
            with_c: true,
            ..FanRequest::default()
        })
        .await
        .unwrap();

    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    assert_eq!(outcome.response.unwrap(), ["a7", "b7", "c7"]);
    assert_eq!(journal.count("run Collect"), 1);
    // Each member ran as a member run of its own, linked to the task and
    // submitted by nobody.
    let task_id = outcome.progress.task_id;
    let tracker = &host.host().infrastructure().progress;
    let member = tracker.get(TaskId::member(task_id, "RenderA")).await.unwrap();
    let member = member.expect("RenderA's member run");
    assert_eq!(member.parent_task_id, Some(task_id));
    assert_eq!(member.submitter, None);
    assert_eq!(member.status, TaskStatus::Completed);
}

#[tokio::test]
async fn a_deployment_may_run_a_distributed_group_inside_one_worker() {
    let journal = Journal::default();
    let host = TestHost::with(|builder| {
        builder.register(FanOut::new(&journal)).kernel_settings(KernelSettings {
            group_distribution: GroupDistribution::Nowhere,
            ..KernelSettings::default()
        })
    });
    let outcome = host
        .run::<FanOut>(FanRequest {
            meet: true,
            ..FanRequest::default()
        })
        .await
        .unwrap();

    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    assert_eq!(outcome.response.unwrap(), ["a7", "b7"]);
    let task_id = outcome.progress.task_id;
    let tracker = &host.host().infrastructure().progress;
    let member = tracker.get(TaskId::member(task_id, "RenderA")).await.unwrap();
    assert!(member.is_none(), "no member run: the members ran in the task's own run");
}

#[tokio::test]
async fn a_worker_stopping_while_its_task_waits_for_members_hands_it_over() {
    let journal = Journal::default();
    let (api, mut workers, task) = cluster(&journal, 3);
    let handle = api
        .submit::<FanOut>(FanRequest {
            hold_b: true,
            ..FanRequest::default()
        })
        .await
        .unwrap();
    let mut stream = handle.stream().await.unwrap();
    let mut waiting = None;
    while let Some(progress) = stream.next().await {
        if step(&progress, "RenderA").status == StepStatus::Completed
            && step(&progress, "RenderB").status == StepStatus::Running
        {
            waiting = Some(progress);
            break;
        }
    }
    // The worker that ran Prepare runs the saga: it now waits for RenderB.
    let parent = step(&waiting.expect("RenderA recorded, RenderB running"), "Prepare")
        .worker
        .clone()
        .expect("Prepare names its worker");
    let index = (1..=workers.len())
        .position(|n| format!("w{n}") == parent)
        .expect("one of the workers");
    workers.remove(index).shutdown().await;
    task.gate.add_permits(10);
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    assert_eq!(outcome.response.unwrap(), ["a7", "b7"]);
    assert_eq!(journal.count("run Prepare"), 1);
    assert_eq!(journal.count("run RenderA"), 1, "a recorded member never runs again");
    assert_eq!(journal.count("run Collect"), 1, "one fan-in");
    let collect = step(&outcome.progress, "Collect");
    assert_ne!(
        collect.worker.as_deref(),
        Some(parent.as_str()),
        "another worker took the task over"
    );
    for worker in workers {
        worker.shutdown().await;
    }
}

#[tokio::test]
async fn a_dead_lettered_member_message_is_listed_and_replayed_to_the_member_queue() {
    let journal = Journal::default();
    let (api, workers, task) = cluster(&journal, 2);
    let handle = api
        .submit::<FanOut>(FanRequest {
            hold_b: true,
            ..FanRequest::default()
        })
        .await
        .unwrap();
    let task_id = handle.id();
    // A member message naming a step that is no group member: the worker
    // keeps it for an operator instead of running anything from it.
    let payload = dtask::Codec::new(dtask::Format::Json)
        .encode(&serde_json::json!({}))
        .unwrap();
    let stray = dtask::infra::QueueMessage::new(task_id, "FanOut", payload).for_member("Prepare");
    let infra = api.infrastructure();
    infra.publisher.publish("fan-out.members", stray).await.unwrap();
    let listed = dead_letter_of(&api, task_id, None).await;
    assert_eq!(listed.queue, "fan-out.members");
    assert_eq!(
        listed.letter.message.as_ref().unwrap().member.as_deref(),
        Some("Prepare")
    );
    let reason = &listed.letter.reason;
    assert!(
        reason.contains("`Prepare` is not a member of a distributed group of `FanOut`"),
        "{reason}"
    );
    assert_eq!(
        listed.progress.as_ref().unwrap().task_id,
        task_id,
        "listed with its task's progress"
    );

    // Replayed, it goes back to the member queue as a member's message, and
    // is moved aside again for the same reason.
    assert_eq!(api.retry(task_id).await.unwrap(), dtask::RetryOutcome::Requeued);
    let again = dead_letter_of(&api, task_id, Some(&listed.letter.id)).await;
    assert_eq!(again.queue, "fan-out.members");
    assert_eq!(&again.letter.reason, reason);

    // The task itself was never disturbed.
    task.gate.add_permits(10);
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    assert_eq!(journal.count("run Prepare"), 1);
    for worker in workers {
        worker.shutdown().await;
    }
}

/// The dead letter of `task_id` (other than `seen`), once a worker has
/// moved it aside.
async fn dead_letter_of(host: &Host, task_id: TaskId, seen: Option<&str>) -> dtask::DeadLetteredTask {
    let found = async {
        loop {
            let letters = host.dead_letters(10).await.unwrap();
            let mine = letters.into_iter().find(|l| {
                l.letter.message.as_ref().is_some_and(|m| m.task_id == task_id) && Some(l.letter.id.as_str()) != seen
            });
            if let Some(letter) = mine {
                return letter;
            }
            // The worker's move is not announced: look again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), found)
        .await
        .expect("the message dead-lettered within 10 s")
}

/// The same race on the real backends (built with the `distributed`
/// feature, as the workspace's test run builds it).
#[cfg(feature = "distributed")]
mod real_backends {
    use super::*;
    use dtask::distributed::dtask_redis_streams::RedisStreamsConfig;
    use dtask::distributed::{DistributedOptions, QueueKind};

    /// An API host and two worker hosts on the real backends `queue` names
    /// (each host with connections of its own, as separate processes would
    /// have), in a namespace of their own.
    async fn real_cluster(journal: &Journal, queue: QueueKind) -> (Host, Vec<Host>) {
        let database_url = std::env::var("DTASK_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://dtask:dtask@127.0.0.1:5432/dtask_test".into());
        let mut options = DistributedOptions::new(queue)
            .database_url(database_url)
            .namespace(format!("fan-{}", TaskId::new()));
        // A worker takes one message at a time, as a farm's should: with a
        // deeper prefetch, the first worker to subscribe could hold both
        // members while the other is still connecting (see docs/dsl.md).
        options.amqp = options.amqp.clone().with_prefetch(1);
        options.amqp10 = options.amqp10.clone().with_prefetch(1);
        options.streams = Some(RedisStreamsConfig::new("redis://127.0.0.1:6379").with_read_count(1));
        let task = FanOut::new(journal);
        let mut hosts = Vec::new();
        for n in 0..3 {
            let infra = options.connect(&[]).await.expect("the services the tests need");
            let builder = Host::builder()
                .mode(Mode::Distributed)
                .infrastructure(infra)
                .register(task.clone())
                .run_workers(n > 0)
                .worker_concurrency(1)
                .node_name(format!("w{n}"));
            hosts.push(builder.build().unwrap());
        }
        let api = hosts.remove(0);
        (api, hosts)
    }

    async fn members_ending_together_on(queue: QueueKind) {
        let journal = Journal::default();
        let (api, workers) = real_cluster(&journal, queue).await;
        race(&api, &journal, 5).await;
        for worker in workers {
            worker.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_ending_together_on_rabbitmq_are_recorded_once() {
        members_ending_together_on(QueueKind::RabbitMq).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_ending_together_on_amqp10_are_recorded_once() {
        members_ending_together_on(QueueKind::Amqp10).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_ending_together_on_redis_streams_are_recorded_once() {
        members_ending_together_on(QueueKind::RedisStreams).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_ending_together_on_postgres_are_recorded_once() {
        members_ending_together_on(QueueKind::Postgres).await;
    }
}

#[tokio::test]
async fn the_member_queue_is_served_and_measured_beside_the_task_queue() {
    let queue = dtask::memory::MemoryQueue::new();
    let host = Host::builder()
        .mode(Mode::InProcess)
        .register(FanOut::new(&Journal::default()))
        .queue(queue.clone())
        .queue_depths(queue)
        .build()
        .unwrap();
    let depths = host.queue_depths().await.unwrap();
    let names: Vec<&str> = depths.iter().map(|(queue, _)| queue.as_str()).collect();
    assert_eq!(names, ["fan-out", "fan-out.members"]);
    host.shutdown().await;
}
