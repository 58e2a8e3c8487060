//! Faults injected at the exact moment against the PostgreSQL backends: the
//! worker reaches the server through a TCP proxy that cuts every one of its
//! connections (queue, lock, state, progress) when a [`Tripwire`] state
//! store sees the save it targets, for longer than the worker's lock lasts.
//! Each case ends with the task completed, no step run again whose end was
//! saved, nothing left in the queue, and progress that never showed an
//! unsaved state (an [`AuditedTracker`] checks every write against the
//! state read through a connection the faults do not touch).
//!
//! Needs PostgreSQL on 127.0.0.1:5432 with the database `scripts/test`
//! creates (or `DTASK_DATABASE_URL`).

#![cfg(feature = "distributed")]

mod support;

#[path = "support/audit.rs"]
mod audit;

use std::sync::Arc;
use std::time::Duration;

use audit::{AuditedTracker, Tripwire, When};
use dtask::TaskProgress;
use dtask::distributed::dtask_postgres::{PostgresBackends, PostgresConfig, PostgresQueue};
use dtask::infra::{DeadLetters, Infrastructure, NamespacedQueue, ProgressTracker, SagaStateStore};
use dtask::memory::MemoryObjectStore;
use dtask::prelude::*;
use dtask_core::conformance::FaultProxy;
use support::{Journal, OrderRequest, PlaceOrder, assert_order_completed, charge_just_completed};

/// The worker's lock TTL: its save retries last this long.
const LOCK_TTL: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(60);

fn database_url() -> String {
    std::env::var("DTASK_DATABASE_URL").unwrap_or_else(|_| "postgres://dtask:dtask@127.0.0.1:5432/dtask_test".into())
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(c, r)| (c, r));
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let at = if credentials.is_empty() { "" } else { "@" };
    format!("{scheme}://{credentials}{at}{addr}{path}")
}

async fn connect(url: String) -> PostgresBackends {
    PostgresConfig::new(url)
        .with_visibility_timeout(Duration::from_secs(2))
        .with_poll_interval(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable (run scripts/test): {e}"))
}

fn ends(namespace: &str, queue: PostgresQueue) -> NamespacedQueue<PostgresQueue> {
    NamespacedQueue::new(namespace, queue)
}

struct Rig {
    api: Host,
    worker: Host,
    journal: Journal,
    audit: AuditedTracker<PlaceOrder>,
    proxy: Arc<FaultProxy>,
    queue: PostgresQueue,
    namespace: String,
}

impl Rig {
    async fn new(
        worker_state: impl FnOnce(Arc<dyn SagaStateStore>, &Arc<FaultProxy>) -> Arc<dyn SagaStateStore>,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .with_test_writer()
            .try_init();
        let url = database_url();
        let direct = connect(url.clone()).await;
        let target = postgres_addr(&url);
        let proxy = Arc::new(FaultProxy::start(target).await);
        let proxied = connect(through(&url, proxy.addr())).await;
        let namespace = format!("pg-faults-{}", TaskId::new().to_string().replace('-', ""));

        let direct_state: Arc<dyn SagaStateStore> = Arc::new(direct.state());
        let progress: Arc<dyn ProgressTracker> = Arc::new(direct.progress());
        let audit = AuditedTracker::<PlaceOrder>::new(Arc::new(proxied.progress()), Arc::clone(&direct_state));
        let storage = Arc::new(MemoryObjectStore::new());
        let api_queue = ends(&namespace, direct.queue());
        let worker_queue = ends(&namespace, proxied.queue());
        let api = Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(Infrastructure {
                storage: storage.clone(),
                publisher: Arc::new(api_queue.clone()),
                consumer: Arc::new(api_queue.clone()),
                lock: Arc::new(direct.lock()),
                progress,
                state: direct_state,
                idempotency: Arc::new(direct.idempotency()),
                dead_letters: Some(Arc::new(api_queue)),
                workers: None,
                depths: None,
                cancellations: None,
                settlement: None,
                lock_with_state: None,
            })
            .register(PlaceOrder::default())
            .run_workers(false)
            .build()
            .unwrap();
        let journal = Journal::default();
        let worker = Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(Infrastructure {
                storage,
                publisher: Arc::new(worker_queue.clone()),
                consumer: Arc::new(worker_queue.clone()),
                lock: Arc::new(proxied.lock()),
                progress: Arc::new(audit.clone()),
                state: worker_state(Arc::new(proxied.state()), &proxy),
                idempotency: Arc::new(proxied.idempotency()),
                dead_letters: Some(Arc::new(worker_queue)),
                workers: None,
                depths: None,
                cancellations: None,
                settlement: None,
                lock_with_state: None,
            })
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
            proxy,
            queue: direct.queue(),
            namespace,
        }
    }

    async fn run(&self, item: &str) -> (TaskProgress, Option<support::OrderResponse>) {
        let handle = self
            .api
            .submit::<PlaceOrder>(OrderRequest {
                item: item.into(),
                ..OrderRequest::default()
            })
            .await
            .expect("the API side submits on its direct connections");
        let outcome = tokio::time::timeout(PATIENCE, handle.wait())
            .await
            .expect("the task ends")
            .unwrap();
        (outcome.progress, outcome.response)
    }

    /// Stops the worker and deletes the queue; returns how many messages
    /// and dead letters were left.
    async fn cleanup(self) -> usize {
        self.worker.shutdown().await;
        let queue = format!("{}.orders", self.namespace);
        let waiting = self.queue.len(&queue).await.unwrap();
        let dead = self.queue.dead_letters(&queue, 10).await.unwrap().len();
        self.queue.delete_queue(&queue).await.unwrap();
        usize::try_from(waiting).unwrap() + dead
    }
}

/// The server's address in `url` (`host:port`, port 5432 by default).
fn postgres_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&host_port)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve {host_port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_at_the_final_save_hands_the_task_back_and_it_completes_without_rerunning_a_step() {
    let rig = Rig::new(|state, proxy| {
        Arc::new(Tripwire::<PlaceOrder>::new(
            state,
            When::Before,
            TaskProgress::is_terminal,
            proxy.cut_for(LOCK_TTL * 3),
        ))
    })
    .await;
    let (progress, response) = rig.run("lamp").await;
    assert_order_completed(&progress, response, "lamp");
    assert_eq!(rig.proxy.cuts(), 1, "the tripwire fired");
    for step in ["run Reserve", "run Charge", "run Ship"] {
        assert_eq!(rig.journal.count(step), 1, "{step} ran again though its end was saved");
    }
    rig.audit.assert_clean();
    assert_eq!(rig.cleanup().await, 0, "a message was left behind or dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_at_a_mid_run_save_runs_again_only_the_step_whose_end_was_not_saved() {
    let rig = Rig::new(|state, proxy| {
        Arc::new(Tripwire::<PlaceOrder>::new(
            state,
            When::Before,
            charge_just_completed,
            proxy.cut_for(LOCK_TTL * 3),
        ))
    })
    .await;
    let (progress, response) = rig.run("desk").await;
    assert_order_completed(&progress, response, "desk");
    assert_eq!(rig.proxy.cuts(), 1, "the tripwire fired");
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
