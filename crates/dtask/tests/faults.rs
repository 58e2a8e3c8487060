//! Faults injected at the exact moment, against the real Redis and
//! RabbitMQ on loopback: a TCP proxy between the worker and the server
//! cuts the connection when a [`Tripwire`] state store sees the save it
//! targets, or (AMQP) right after the broker confirms a dead letter and
//! before the worker's ack reaches it. Each case ends with the task in its
//! true terminal state, no step run again whose end was saved, nothing
//! acknowledged that was not saved, and progress that never showed an
//! unsaved state (an [`AuditedTracker`] checks every write against the
//! state read through a connection the faults do not touch).
//!
//! The `fused_` cases do the same where the worker settles with Redis's
//! `StateWithProgress` (a state saved and its progress shown by one
//! script) and takes a redelivered task's lock and state with its
//! `LockWithState` (one script too): cut before the final settlement, and
//! cut after it ran but before its answer came back; a [`StreamAudit`]
//! follows what the task's progress showed, since those writes happen
//! inside Redis.
//!
//! Needs Redis on 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672.

#![cfg(feature = "distributed")]

mod support;

#[path = "support/audit.rs"]
mod audit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use audit::{AuditedTracker, StreamAudit, Tripwire, When};
use dtask::distributed::dtask_amqp::{AmqpConfig, AmqpQueue};
use dtask::distributed::dtask_redis::{RedisBackends, RedisConfig};
use dtask::distributed::dtask_redis_streams::{RedisStreamsConfig, RedisStreamsQueue};
use dtask::infra::{
    DeadLetters, Infrastructure, LockWithState, NamespacedQueue, ProgressTracker, SagaStateStore, StateWithProgress,
};
use dtask::memory::MemoryObjectStore;
use dtask::prelude::*;
use dtask_core::conformance::FaultProxy;
use support::{Journal, OrderRequest, PlaceOrder, PlaceOrderV2, assert_order_completed, charge_just_completed};

const REDIS: &str = "127.0.0.1:6379";
const RABBITMQ: &str = "127.0.0.1:5672";
/// The worker's lock TTL: its save retries last this long.
const LOCK_TTL: Duration = Duration::from_secs(2);
/// How long a test waits for what should happen.
const PATIENCE: Duration = Duration::from_secs(60);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_like())
}

fn uuid_like() -> String {
    TaskId::new().to_string().replace('-', "")
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

async fn redis(url: &str, prefix: &str) -> RedisBackends {
    RedisConfig::new(url)
        .with_key_prefix(prefix)
        .with_connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {url} (the fault tests need it): {e}"))
}

async fn amqp(url: String, name: &str) -> AmqpQueue {
    let config = AmqpConfig::new(url)
        .with_connection_name(name)
        .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500));
    AmqpQueue::connect(config)
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is not reachable at {RABBITMQ} (the fault tests need it): {e}"))
}

/// Which queue the rig runs on, and whether the worker reaches it through
/// a proxy.
enum Broker {
    RabbitMq { proxied: bool },
    RedisStreams,
}

/// How the worker saves, and where its fault waits: its state store
/// (each settlement then saves, then writes progress through the audited
/// tracker), or Redis's [`StateWithProgress`] (a settlement saved and
/// shown by one script; a [`StreamAudit`] checks what it shows).
enum Saving {
    Plain(Wrap<dyn SagaStateStore>),
    Fused(Wrap<dyn StateWithProgress>),
}

/// Wraps the worker's store (with a tripwire that acts on the proxy).
type Wrap<S> = Box<dyn FnOnce(Arc<S>, &Arc<FaultProxy>) -> Arc<S>>;

/// An API host on direct connections, and a worker host whose Redis (lock
/// and saga state) goes through `redis_proxy` and whose queue goes
/// through `queue_proxy` when there is one. The worker's progress writes
/// go to Redis directly, audited against the state read directly.
struct Rig {
    api: Host,
    worker: Host,
    journal: Journal,
    audit: AuditedTracker<PlaceOrder>,
    redis_proxy: Arc<FaultProxy>,
    queue_proxy: Option<Arc<FaultProxy>>,
    namespace: String,
    amqp: Option<AmqpQueue>,
    streams: Option<RedisStreamsQueue>,
    dead_letters: Arc<dyn DeadLetters>,
    /// The progress and the state as read directly.
    direct: (Arc<dyn ProgressTracker>, Arc<dyn SagaStateStore>),
}

impl Rig {
    async fn new(
        broker: Broker,
        worker_state: impl FnOnce(Arc<dyn SagaStateStore>, &Arc<FaultProxy>) -> Arc<dyn SagaStateStore> + 'static,
    ) -> Self {
        Self::build(broker, Saving::Plain(Box::new(worker_state))).await
    }

    /// A rig whose worker settles with Redis's [`StateWithProgress`],
    /// wrapped by `settlement`.
    async fn fused(
        broker: Broker,
        settlement: impl FnOnce(Arc<dyn StateWithProgress>, &Arc<FaultProxy>) -> Arc<dyn StateWithProgress> + 'static,
    ) -> Self {
        Self::build(broker, Saving::Fused(Box::new(settlement))).await
    }

    async fn build(broker: Broker, saving: Saving) -> Self {
        // The workers' logs, shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .with_test_writer()
            .try_init();
        let prefix = format!("{}:", unique("dtask-faults"));
        let namespace = unique("faults");
        let redis_proxy = Arc::new(FaultProxy::start(addr(REDIS)).await);
        let direct = redis(&format!("redis://{REDIS}"), &prefix).await;
        let proxied = redis(&format!("redis://{}", redis_proxy.addr()), &prefix).await;

        let (api_queue, worker_queue, queue_proxy, amqp_handle, streams_handle) = match broker {
            Broker::RabbitMq { proxied } => {
                let api = amqp(format!("amqp://guest:guest@{RABBITMQ}/%2f"), "faults-api").await;
                let (worker, proxy) = if proxied {
                    let proxy = Arc::new(FaultProxy::start(addr(RABBITMQ)).await);
                    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr());
                    (amqp(url, "faults-worker").await, Some(proxy))
                } else {
                    (api.clone(), None)
                };
                (
                    QueueSet::new(&namespace, api.clone()),
                    QueueSet::new(&namespace, worker),
                    proxy,
                    Some(api),
                    None,
                )
            }
            Broker::RedisStreams => {
                let proxy = Arc::new(FaultProxy::start(addr(REDIS)).await);
                let config = |url: String| {
                    RedisStreamsConfig::new(url)
                        .with_key_prefix(format!("{prefix}queue:"))
                        .with_visibility_timeout(Duration::from_secs(2))
                        .with_block_timeout(Duration::from_millis(200))
                        .with_connect_timeout(Duration::from_secs(1))
                };
                let api = RedisStreamsQueue::connect(config(format!("redis://{REDIS}")))
                    .await
                    .unwrap();
                let worker = RedisStreamsQueue::connect(config(format!("redis://{}", proxy.addr())))
                    .await
                    .unwrap();
                (
                    QueueSet::new(&namespace, api.clone()),
                    QueueSet::new(&namespace, worker),
                    Some(proxy),
                    None,
                    Some(api),
                )
            }
        };

        let direct_state: Arc<dyn SagaStateStore> = Arc::new(direct.state());
        let progress: Arc<dyn ProgressTracker> = Arc::new(direct.progress());
        let audit = AuditedTracker::<PlaceOrder>::new(Arc::clone(&progress), Arc::clone(&direct_state));
        let direct_views = (Arc::clone(&progress), Arc::clone(&direct_state));
        let (worker_state, settlement, lock_with_state) = match saving {
            Saving::Plain(wrap) => (wrap(Arc::new(proxied.state()), &redis_proxy), None, None),
            // Redis's two scripts that join a task's keys: a redelivery takes
            // its lock and reads its state through the proxy at once too.
            Saving::Fused(wrap) => (
                Arc::new(proxied.state()) as Arc<dyn SagaStateStore>,
                Some(wrap(Arc::new(proxied.settlement()), &redis_proxy)),
                proxied
                    .lock_with_state()
                    .map(|take| Arc::new(take) as Arc<dyn LockWithState>),
            ),
        };
        let storage = Arc::new(MemoryObjectStore::new());
        let api_infra = Infrastructure {
            storage: storage.clone(),
            publisher: api_queue.publisher,
            consumer: api_queue.consumer,
            lock: Arc::new(direct.lock()),
            progress,
            state: direct_state,
            idempotency: Arc::new(direct.idempotency()),
            dead_letters: Some(Arc::clone(&api_queue.dead_letters)),
            workers: None,
            depths: None,
            cancellations: None,
            settlement: None,
            lock_with_state: None,
        };
        let worker_infra = Infrastructure {
            storage,
            publisher: worker_queue.publisher,
            consumer: worker_queue.consumer,
            lock: Arc::new(proxied.lock()),
            progress: Arc::new(audit.clone()),
            state: worker_state,
            idempotency: Arc::new(direct.idempotency()),
            dead_letters: Some(worker_queue.dead_letters),
            workers: None,
            depths: None,
            // Through the proxy: a cut connection is a gap in the feed.
            cancellations: Some(Arc::new(proxied.progress())),
            settlement,
            lock_with_state,
        };
        let api = Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(api_infra)
            .register(PlaceOrder::default())
            .run_workers(false)
            .build()
            .unwrap();
        let journal = Journal::default();
        let worker = Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(worker_infra)
            .register(PlaceOrder {
                journal: journal.clone(),
            })
            .lock_ttl(LOCK_TTL)
            .build()
            .unwrap();
        Self {
            api,
            worker,
            journal,
            audit,
            redis_proxy,
            queue_proxy,
            namespace,
            amqp: amqp_handle,
            streams: streams_handle,
            dead_letters: api_queue.dead_letters,
            direct: direct_views,
        }
    }

    async fn run(&self, item: &str) -> (TaskId, TaskProgress, Option<support::OrderResponse>) {
        self.run_audited(item).await.0
    }

    /// Runs an order of `item` to its end, with a [`StreamAudit`] of what
    /// its progress showed (from the submission on).
    async fn run_audited(&self, item: &str) -> ((TaskId, TaskProgress, Option<support::OrderResponse>), StreamAudit) {
        let handle = self
            .api
            .submit::<PlaceOrder>(OrderRequest {
                item: item.into(),
                ..OrderRequest::default()
            })
            .await
            .expect("the API side submits on its direct connections");
        let audit = StreamAudit::follow::<PlaceOrder>(&self.direct.0, &self.direct.1, handle.id()).await;
        let outcome = tokio::time::timeout(PATIENCE, handle.wait())
            .await
            .expect("the task ends")
            .unwrap();
        ((handle.id(), outcome.progress, outcome.response), audit)
    }

    fn queue_name(&self) -> String {
        format!("{}.orders", self.namespace)
    }

    /// Waits until the Redis stream holds nothing: no message waiting, none
    /// out for delivery and not acked (the broker tells no one when a
    /// message is settled, so this looks every 50 ms).
    async fn until_stream_empty(&self) {
        let (queue, streams) = (self.queue_name(), self.streams.as_ref().expect("a Redis Streams rig"));
        tokio::time::timeout(PATIENCE, async {
            while streams.len(&queue).await.unwrap() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the stream empties");
    }

    /// Stops the worker (handing back whatever it holds) and deletes the
    /// queues; returns how many messages the RabbitMQ queue and its
    /// dead-letter queue still held.
    async fn cleanup(self) -> u32 {
        self.worker.shutdown().await;
        let queue = self.queue_name();
        let mut left = 0;
        if let Some(amqp) = &self.amqp {
            left = amqp.delete(&queue).await.unwrap();
        }
        if let Some(streams) = &self.streams {
            streams.delete_queue(&queue).await.unwrap();
        }
        left
    }
}

/// A queue backend's three ends, namespaced.
struct QueueSet {
    publisher: Arc<dyn dtask::infra::QueuePublisher>,
    consumer: Arc<dyn dtask::infra::QueueConsumer>,
    dead_letters: Arc<dyn DeadLetters>,
}

impl QueueSet {
    fn new<Q>(namespace: &str, queue: Q) -> Self
    where
        Q: dtask::infra::QueuePublisher + dtask::infra::QueueConsumer + DeadLetters + Clone,
    {
        let queue = NamespacedQueue::new(namespace, queue);
        Self {
            publisher: Arc::new(queue.clone()),
            consumer: Arc::new(queue.clone()),
            dead_letters: Arc::new(queue),
        }
    }
}

fn is_terminal(progress: &TaskProgress) -> bool {
    progress.is_terminal()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_at_the_final_save_hands_the_task_back_and_it_completes_without_rerunning_a_step() {
    let rig = Rig::new(Broker::RabbitMq { proxied: false }, |state, proxy| {
        // Longer than the save's retries (the lock's TTL).
        Arc::new(Tripwire::<PlaceOrder>::new(
            state,
            When::Before,
            is_terminal,
            proxy.cut_for(LOCK_TTL * 3),
        ))
    })
    .await;
    let (_, progress, response) = rig.run("lamp").await;
    assert_order_completed(&progress, response, "lamp");
    assert_eq!(rig.redis_proxy.cuts(), 1, "the tripwire fired");
    for step in ["run Reserve", "run Charge", "run Ship"] {
        assert_eq!(rig.journal.count(step), 1, "{step} ran again though its end was saved");
    }
    rig.audit.assert_clean();
    assert_eq!(rig.cleanup().await, 0, "a message was left behind or dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_at_a_mid_run_save_runs_again_only_the_step_whose_end_was_not_saved() {
    let rig = Rig::new(Broker::RabbitMq { proxied: false }, |state, proxy| {
        Arc::new(Tripwire::<PlaceOrder>::new(
            state,
            When::Before,
            charge_just_completed,
            proxy.cut_for(LOCK_TTL * 3),
        ))
    })
    .await;
    let (_, progress, response) = rig.run("desk").await;
    assert_order_completed(&progress, response, "desk");
    assert_eq!(rig.redis_proxy.cuts(), 1, "the tripwire fired");
    assert_eq!(rig.journal.count("run Reserve"), 1);
    assert_eq!(
        rig.journal.count("run Charge"),
        2,
        "Charge's end was not saved: it runs again"
    );
    assert_eq!(rig.journal.count("run Ship"), 1);
    rig.audit.assert_clean();
    assert_eq!(rig.cleanup().await, 0, "a message was left behind or dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fused_settlement_cut_before_the_final_one_hands_the_task_back_and_it_completes_without_rerunning_a_step() {
    let rig = Rig::fused(Broker::RabbitMq { proxied: false }, |settlement, proxy| {
        Arc::new(Tripwire::<PlaceOrder, _>::new(
            settlement,
            When::Before,
            is_terminal,
            proxy.cut_for(LOCK_TTL * 3),
        ))
    })
    .await;
    let ((_, progress, response), shown) = rig.run_audited("rug").await;
    assert_order_completed(&progress, response, "rug");
    assert_eq!(rig.redis_proxy.cuts(), 1, "the tripwire fired");
    for step in ["run Reserve", "run Charge", "run Ship"] {
        assert_eq!(rig.journal.count(step), 1, "{step} ran again though its end was saved");
    }
    shown.assert_clean().await;
    rig.audit.assert_clean();
    assert_eq!(rig.cleanup().await, 0, "a message was left behind or dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fused_settlement_applied_but_its_answer_lost_is_saved_again_and_the_task_completes_once() {
    let rig = Rig::fused(Broker::RabbitMq { proxied: false }, |settlement, proxy| {
        let proxy = Arc::clone(proxy);
        Arc::new(Tripwire::<PlaceOrder, _>::new(
            settlement,
            When::Before,
            is_terminal,
            move || {
                // The final settlement's script (its status argument, as RESP
                // sends it) reaches Redis; its answer never comes back.
                proxy.cut_after_request_with(b"$9\r\ncompleted\r\n", Duration::from_millis(300));
            },
        ))
    })
    .await;
    let ((id, progress, response), shown) = rig.run_audited("lamp").await;
    assert_order_completed(&progress, response, "lamp");
    // The script published the end before its answer reached the proxy.
    tokio::time::timeout(PATIENCE, rig.redis_proxy.until_cuts(1))
        .await
        .expect("the final settlement's answer was lost");
    assert_eq!(rig.redis_proxy.cuts(), 1);
    for step in ["run Reserve", "run Charge", "run Ship"] {
        assert_eq!(rig.journal.count(step), 1, "{step} ran again though its end was saved");
    }
    shown.assert_clean().await;
    let stored = rig.direct.0.get(id).await.unwrap().expect("the task's progress");
    assert_eq!(stored.status, TaskStatus::Completed, "{stored:?}");
    rig.audit.assert_clean();
    assert_eq!(rig.cleanup().await, 0, "a message was left behind or dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_during_the_ack_leaves_the_message_to_come_back_and_be_acked_once_the_task_is_found_ended() {
    let queue_cut: Arc<std::sync::OnceLock<Arc<FaultProxy>>> = Arc::default();
    let slot = Arc::clone(&queue_cut);
    let rig = Rig::new(Broker::RedisStreams, move |state, _| {
        // Once the final state is saved, the queue's connection goes.
        Arc::new(Tripwire::<PlaceOrder>::new(
            state,
            When::After,
            is_terminal,
            move || {
                let proxy = slot.get().expect("the queue proxy");
                proxy.cut_for(Duration::from_millis(1500))();
            },
        ))
    })
    .await;
    let _ = queue_cut.set(Arc::clone(rig.queue_proxy.as_ref().unwrap()));
    let (_, progress, response) = rig.run("chair").await;
    assert_order_completed(&progress, response, "chair");
    rig.until_stream_empty().await;
    let queue_proxy = rig.queue_proxy.as_ref().unwrap();
    assert_eq!(queue_proxy.cuts(), 1, "the tripwire fired");
    for step in ["run Reserve", "run Charge", "run Ship"] {
        assert_eq!(rig.journal.count(step), 1, "{step} ran again");
    }
    let dead = rig.dead_letters.dead_letters("orders", 10).await.unwrap();
    assert!(dead.is_empty(), "nothing is dead-lettered: {dead:?}");
    rig.audit.assert_clean();
    rig.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_cut_between_a_confirmed_dead_letter_and_its_ack_loses_nothing() {
    let rig = Rig::new(Broker::RabbitMq { proxied: true }, |state, _| state).await;
    let amqp_proxy = Arc::clone(rig.queue_proxy.as_ref().unwrap());
    let new_api = Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(rig.api.infrastructure().clone())
        .register(PlaceOrderV2)
        .run_workers(false)
        .build()
        .unwrap();

    amqp_proxy.cut_after_next_confirm();
    let foreign = new_api
        .submit::<PlaceOrderV2>(OrderRequest::default())
        .await
        .unwrap()
        .id();
    // The proxy cuts once the broker confirmed the dead letter; the worker's
    // ack never arrived, so the broker hands the message back.
    // (Nothing tells the test when either happens: it looks every 20 ms.)
    tokio::time::timeout(PATIENCE, async {
        while amqp_proxy.cuts() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the broker confirmed a dead letter");
    amqp_proxy.restore();
    let dead = tokio::time::timeout(PATIENCE, async {
        loop {
            let dead = rig.dead_letters.dead_letters("orders", 10).await.unwrap();
            if dead.len() >= 2 {
                return dead;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the message came back and was dead-lettered again");
    for letter in &dead {
        assert_eq!(letter.message.as_ref().unwrap().task_id, foreign);
        assert!(
            letter.reason.contains("`PlaceOrder[Reserve, Pack, Ship]`"),
            "{}",
            letter.reason
        );
    }
    // The first dead letter was confirmed before the cut and the message came
    // back unacknowledged: it is dead-lettered again, never lost.
    assert_eq!(dead.len(), 2, "{dead:?}");

    // The worker goes on serving its own tasks.
    let (_, progress, response) = rig.run("kettle").await;
    assert_order_completed(&progress, response, "kettle");
    assert_eq!(
        rig.cleanup().await,
        2,
        "the two dead letters, and nothing left in the queue"
    );
}
