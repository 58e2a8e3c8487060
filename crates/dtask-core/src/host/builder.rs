//! Building a host: the mode, the services (any of which can be
//! overridden), the serializer, the tasks.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::worker::{self, ErasedTask, Registered};
use super::{Host, HostInner, RegisteredTask, served_queues};
use super::{cancellations, chain, depths, presence};
use crate::codec::KeyRing;
use crate::error::{Error, Result};
use crate::event::TaskEvent;
use crate::format::Format;
use crate::infra::{
    CancellationFeed, DeadLetters, DistributedLock, IdempotencyStore, Infrastructure, LockWithState, ObjectStore,
    ProgressTracker, QueueConsumer, QueueDepths, QueuePublisher, SagaStateStore, StateWithProgress, TaskHistory,
    WorkerRegistry,
};
use crate::kernel::{
    Dependent, Dependents, EventListener, HistorySettings, HistoryWriter, KernelSettings, Metrics, Runtime,
    StepInterceptor,
};
use crate::memory::{
    MemoryIdempotencyStore, MemoryLock, MemoryObjectStore, MemoryProgressTracker, MemoryQueue, MemoryStateStore,
    MemoryWorkerRegistry,
};
use crate::principal::DEFAULT_OPERATOR_ROLE;
use crate::task::{Mode, Task, TaskDefinition};
use crate::trace::TraceBridge;

/// Configures and starts a [`Host`].
///
/// In [`Mode::InProcess`] every service not given is the in-memory one; in
/// [`Mode::Distributed`] every service must be given (the backend crates
/// provide them). Either way any single service can be overridden:
///
/// ```
/// use dtask_core::{Host, Mode};
/// use dtask_core::fs::LocalFileSystemStore;
/// # async fn demo() -> dtask_core::Result<()> {
/// let dir = std::env::temp_dir().join("dtask-doc-example");
/// let host = Host::builder()
///     .mode(Mode::InProcess)
///     .storage(LocalFileSystemStore::new(&dir)?) // durable files, in-memory rest
///     .worker_concurrency(4)
///     .build()?;
/// # host.shutdown().await;
/// # Ok(()) }
/// ```
pub struct HostBuilder {
    mode: Option<Mode>,
    format: Option<Format>,
    serialize_in_process: bool,
    queue_capacity: usize,
    worker_concurrency: usize,
    run_workers: bool,
    settings: KernelSettings,
    storage: Option<Arc<dyn ObjectStore>>,
    publisher: Option<Arc<dyn QueuePublisher>>,
    consumer: Option<Arc<dyn QueueConsumer>>,
    lock: Option<Arc<dyn DistributedLock>>,
    progress: Option<Arc<dyn ProgressTracker>>,
    state: Option<Arc<dyn SagaStateStore>>,
    idempotency: Option<Arc<dyn IdempotencyStore>>,
    dead_letters: Option<Arc<dyn DeadLetters>>,
    workers: Option<Arc<dyn WorkerRegistry>>,
    depths: Option<Arc<dyn QueueDepths>>,
    cancellations: Option<Arc<dyn CancellationFeed>>,
    settlement: Option<Arc<dyn StateWithProgress>>,
    lock_with_state: Option<Arc<dyn LockWithState>>,
    listeners: Vec<EventListener>,
    interceptor: Option<Arc<dyn StepInterceptor>>,
    tasks: Vec<PendingTask>,
    operator_role: String,
    keys: Option<Arc<KeyRing>>,
    history: Option<(Arc<dyn TaskHistory>, HistorySettings)>,
    node_name: Option<String>,
    tracer: Option<Arc<dyn TraceBridge>>,
}

/// A task given to [`HostBuilder::register`], typed and type-erased.
struct PendingTask {
    definition: &'static TaskDefinition,
    typed: Arc<dyn Any + Send + Sync>,
    erased: Arc<dyn ErasedTask>,
    /// Its `#[depends_on]` edges.
    edges: Vec<Arc<dyn chain::Edge>>,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self {
            mode: None,
            format: None,
            serialize_in_process: false,
            queue_capacity: 100,
            worker_concurrency: 16,
            run_workers: true,
            settings: KernelSettings::default(),
            storage: None,
            publisher: None,
            consumer: None,
            lock: None,
            progress: None,
            state: None,
            idempotency: None,
            dead_letters: None,
            workers: None,
            depths: None,
            cancellations: None,
            settlement: None,
            lock_with_state: None,
            listeners: Vec::new(),
            interceptor: None,
            tasks: Vec::new(),
            operator_role: DEFAULT_OPERATOR_ROLE.to_owned(),
            keys: None,
            history: None,
            node_name: None,
            tracer: None,
        }
    }
}

impl HostBuilder {
    /// Serves task `T`, whose custom steps `task` implements.
    #[must_use]
    pub fn register<T: Task>(mut self, task: T) -> Self {
        let task = Arc::new(task);
        self.tasks.push(PendingTask {
            definition: T::definition(),
            typed: Arc::clone(&task) as Arc<dyn Any + Send + Sync>,
            erased: Arc::new(Registered(task)),
            edges: chain::edges_of::<T>(),
        });
        self
    }

    /// Chooses the mode, overriding the tasks' declared default.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Everything in memory, workers inside the host.
    #[must_use]
    pub fn in_process(self) -> Self {
        self.mode(Mode::InProcess)
    }

    /// Chooses the serializer of every task's messages and snapshots,
    /// overriding the format each task declares (`serialization = ...` in
    /// the DSL). Readers need no such setting: every payload names its
    /// format, so workers read whatever the API side wrote.
    #[must_use]
    pub fn serializer(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// In InProcess mode, serialize every message and snapshot anyway (off
    /// by default: the in-process hand-off shares typed values). Turn it
    /// on in tests to catch state that would not survive a real broker.
    #[must_use]
    pub fn serialize_in_process(mut self, serialize: bool) -> Self {
        self.serialize_in_process = serialize;
        self
    }

    /// Seals every message and saga state this host encodes with the
    /// ring's first key (XChaCha20-Poly1305, bound to the task id and the
    /// format), and opens sealed ones with whichever key of the ring they
    /// name: list a new key first and keep the old ones after it until the
    /// messages they sealed are gone. Progress is not sealed. Required
    /// when a task declares `encrypt_messages` and the host serializes
    /// (Distributed mode, or [`serialize_in_process`](Self::serialize_in_process)).
    #[must_use]
    pub fn encryption(mut self, keys: KeyRing) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// The capacity of each in-memory queue (default 100); a full queue
    /// makes submitters wait.
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// How many tasks each worker loop runs at once (default 16).
    #[must_use]
    pub fn worker_concurrency(mut self, concurrency: usize) -> Self {
        self.worker_concurrency = concurrency.max(1);
        self
    }

    /// Whether this host runs worker loops (default true; false for an
    /// API-only process).
    #[must_use]
    pub fn run_workers(mut self, run: bool) -> Self {
        self.run_workers = run;
        self
    }

    /// The kernel's tunables.
    #[must_use]
    pub fn kernel_settings(mut self, settings: KernelSettings) -> Self {
        self.settings = settings;
        self
    }

    /// How long a worker's lock lasts without renewal (default 30 s).
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lock_ttl = ttl;
        self
    }

    /// How long a shutdown lets running steps finish before cancelling
    /// them and handing their tasks back (default 30 s; see
    /// [`KernelSettings::shutdown_grace`]).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.settings.shutdown_grace = grace;
        self
    }

    /// Where steps get their scratch directories (default: the system
    /// temporary directory).
    #[must_use]
    pub fn scratch_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.settings.scratch_root = root.into();
        self
    }

    /// Sets every service at once (as a Distributed-mode backend set
    /// provides them); later calls override single ones.
    #[must_use]
    pub fn infrastructure(mut self, infra: Infrastructure) -> Self {
        self.storage = Some(infra.storage);
        self.publisher = Some(infra.publisher);
        self.consumer = Some(infra.consumer);
        self.lock = Some(infra.lock);
        self.progress = Some(infra.progress);
        self.state = Some(infra.state);
        self.idempotency = Some(infra.idempotency);
        self.dead_letters = infra.dead_letters;
        self.workers = infra.workers;
        self.depths = infra.depths;
        self.cancellations = infra.cancellations;
        self.settlement = infra.settlement;
        self.lock_with_state = infra.lock_with_state;
        self
    }

    /// Where the host reads how deep its queues are (the default in-memory
    /// queue tells its own).
    #[must_use]
    pub fn queue_depths(mut self, depths: impl QueueDepths) -> Self {
        self.depths = Some(Arc::new(depths));
        self
    }

    /// Where this host's workers announce themselves, and where
    /// [`Host::workers`] lists a deployment's workers (in InProcess mode,
    /// an in-memory registry unless given).
    #[must_use]
    pub fn worker_registry(mut self, registry: impl WorkerRegistry) -> Self {
        self.workers = Some(Arc::new(registry));
        self
    }

    /// Overrides the object store.
    #[must_use]
    pub fn storage(mut self, storage: impl ObjectStore) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// Overrides the queue with one backend: both its ends and its dead
    /// letters. (A backend that keeps no dead letters is given with
    /// [`publisher`](Self::publisher) and [`consumer`](Self::consumer).)
    #[must_use]
    pub fn queue<Q: QueuePublisher + QueueConsumer + DeadLetters + Clone>(mut self, queue: Q) -> Self {
        self.publisher = Some(Arc::new(queue.clone()));
        self.consumer = Some(Arc::new(queue.clone()));
        self.dead_letters = Some(Arc::new(queue));
        self
    }

    /// The queue's dead letters, which [`Host::dead_letters`] lists and
    /// [`Host::retry`] replays. The default in-memory queue keeps its own,
    /// and [`queue`](Self::queue) gives the backend's; a host whose
    /// publisher and consumer are given one by one has none unless given
    /// here.
    #[must_use]
    pub fn dead_letters(mut self, dead_letters: impl DeadLetters) -> Self {
        self.dead_letters = Some(Arc::new(dead_letters));
        self
    }

    /// Overrides the queue publisher.
    #[must_use]
    pub fn publisher(mut self, publisher: impl QueuePublisher) -> Self {
        self.publisher = Some(Arc::new(publisher));
        self
    }

    /// Overrides the queue consumer.
    #[must_use]
    pub fn consumer(mut self, consumer: impl QueueConsumer) -> Self {
        self.consumer = Some(Arc::new(consumer));
        self
    }

    /// Overrides the lock (and drops the infrastructure's
    /// [`lock_with_state`](Infrastructure::lock_with_state)).
    #[must_use]
    pub fn lock(mut self, lock: impl DistributedLock) -> Self {
        self.lock = Some(Arc::new(lock));
        self.lock_with_state = None;
        self
    }

    /// Overrides the progress tracker (and drops the cancellation feed of
    /// the one it replaces, see [`progress_with_feed`](Self::progress_with_feed),
    /// and the infrastructure's [`settlement`](Infrastructure::settlement)).
    #[must_use]
    pub fn progress(mut self, progress: impl ProgressTracker) -> Self {
        self.progress = Some(Arc::new(progress));
        self.cancellations = None;
        self.settlement = None;
        self
    }

    /// Overrides the progress tracker with one that also offers a
    /// [`CancellationFeed`], which this host's workers then follow.
    #[must_use]
    pub fn progress_with_feed<P: ProgressTracker + CancellationFeed + Clone>(mut self, progress: P) -> Self {
        self.progress = Some(Arc::new(progress.clone()));
        self.cancellations = Some(Arc::new(progress));
        self.settlement = None;
        self
    }

    /// Overrides the saga state store (and drops the infrastructure's
    /// [`settlement`](Infrastructure::settlement) and
    /// [`lock_with_state`](Infrastructure::lock_with_state)).
    #[must_use]
    pub fn state_store(mut self, state: impl SagaStateStore) -> Self {
        self.state = Some(Arc::new(state));
        self.settlement = None;
        self.lock_with_state = None;
        self
    }

    /// Overrides the idempotency key store.
    #[must_use]
    pub fn idempotency_store(mut self, store: impl IdempotencyStore) -> Self {
        self.idempotency = Some(Arc::new(store));
        self
    }

    /// Calls `listener` with every event of every task, synchronously and
    /// in order. Keep it quick.
    #[must_use]
    pub fn on_event(mut self, listener: impl Fn(&TaskEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// The role whose holders see and manage every task through a
    /// [`Caller`](super::Caller) (default `dtask-operator`).
    #[must_use]
    pub fn operator_role(mut self, role: impl Into<String>) -> Self {
        self.operator_role = role.into();
        self
    }

    /// Keeps the history of every task in `history` (with the default
    /// [`HistorySettings`]: 30 days after a task ended): its row, its step
    /// attempts, its conditions' snapshots and an audit log, written as
    /// events happen, in batches, without a step ever waiting for it. See
    /// [`Host::history`](super::Host::history).
    #[must_use]
    pub fn history(mut self, history: impl TaskHistory) -> Self {
        self.history = Some((Arc::new(history), HistorySettings::default()));
        self
    }

    /// [`history`](Self::history) with an already shared history and
    /// settings of its own.
    #[must_use]
    pub fn history_with(mut self, history: Arc<dyn TaskHistory>, settings: HistorySettings) -> Self {
        self.history = Some((history, settings));
        self
    }

    /// Names this process in history records (default: `<host name>:<pid>`).
    #[must_use]
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// Links the kernel's spans to a tracing system (`dtask-telemetry`'s
    /// OpenTelemetry bridge): a task's submit span and its worker's spans
    /// then join one distributed trace, carried through the queue.
    /// Without one, the kernel's spans are plain `tracing` spans and the
    /// trace context it carries is its own.
    #[must_use]
    pub fn trace_bridge(mut self, bridge: impl TraceBridge) -> Self {
        self.tracer = Some(Arc::new(bridge));
        self
    }

    /// Installs a hook called before every step and compensation attempt.
    #[must_use]
    pub fn interceptor(mut self, interceptor: impl StepInterceptor) -> Self {
        self.interceptor = Some(Arc::new(interceptor));
        self
    }

    /// Starts the host (and, unless disabled, its worker loops). Must be
    /// called inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::Invalid`] for two tasks of one name, tasks declaring
    /// different default modes with no mode chosen, Distributed mode with
    /// services missing, a task declaring `encrypt_messages` on a host
    /// that serializes without a key ring, or `#[depends_on]` edges that
    /// form a cycle or name a task not registered here.
    pub fn build(self) -> Result<Host> {
        let mode = self.resolve_mode()?;
        let infra = self.resolve_infrastructure(mode)?;
        let serialize = mode == Mode::Distributed || self.serialize_in_process;
        if serialize
            && self.keys.is_none()
            && let Some(task) = self.tasks.iter().find(|t| t.definition.encrypt_messages)
        {
            return Err(Error::invalid(
                "encryption",
                format!(
                    "`{}` declares encrypt_messages but the host has no key ring: \
                         set DTASK_ENCRYPTION_KEYS or call HostBuilder::encryption",
                    task.definition.name
                ),
            ));
        }
        let mut typed = HashMap::new();
        let mut erased: HashMap<&'static str, Arc<dyn ErasedTask>> = HashMap::new();
        let mut edges = Vec::new();
        for PendingTask {
            definition,
            typed: any,
            erased: task,
            edges: task_edges,
        } in self.tasks
        {
            edges.extend(task_edges);
            if typed
                .insert(definition.name, RegisteredTask { definition, typed: any })
                .is_some()
            {
                return Err(Error::invalid(
                    "task registration",
                    format!("`{}` is registered twice", definition.name),
                ));
            }
            erased.insert(definition.name, task);
        }
        chain::check_graph(&edges, &typed.keys().copied().collect())?;
        let dependents = Dependents::new(
            edges
                .iter()
                .map(|edge| (edge.upstream().name, Arc::clone(edge) as Arc<dyn Dependent>)),
        );
        let queues = served_queues(
            erased.values().map(|t| t.definition()),
            self.settings.group_distribution,
        );
        let rt = Arc::new(Runtime {
            infra,
            format_override: self.format,
            serialize,
            keys: self.keys,
            settings: self.settings,
            listeners: self.listeners,
            events: broadcast::channel(1024).0,
            interceptor: self.interceptor,
            running: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            grace_over: CancellationToken::new(),
            history: self
                .history
                .map(|(history, settings)| HistoryWriter::spawn(history, settings)),
            node: self.node_name.unwrap_or_else(default_node_name),
            tracer: self.tracer,
            metrics: Metrics::register(erased.values().map(|task| task.definition()), &queues),
            in_flight: AtomicUsize::new(0),
            dependents,
            follows_cancellations: AtomicBool::new(false),
            dropped: CancellationToken::new(),
        });
        let erased = Arc::new(erased);
        let workers = TaskTracker::new();
        if let Some(depths) = rt.infra.depths.clone() {
            // Not tracked: it ends with the shutdown signal, and a shutdown
            // need not wait for a sample.
            tokio::spawn(depths::sample(Arc::clone(&rt), depths, queues.clone()));
        }
        if self.run_workers {
            if let Some(feed) = rt.infra.cancellations.clone() {
                // Not tracked: it lives as long as the runtime, so the runs
                // a shutdown waits for still hear of cancellations.
                tokio::spawn(cancellations::follow(&rt, feed));
            }
            if let Some(registry) = rt.infra.workers.clone() {
                // The task queues a worker serves (its member queues follow).
                let declared: HashSet<&'static str> = erased.values().map(|t| t.definition().queue).collect();
                let names = declared.iter().map(|queue| (*queue).to_owned()).collect();
                workers.spawn(presence::announce(
                    Arc::clone(&rt),
                    registry,
                    names,
                    self.worker_concurrency,
                ));
            }
            // The members of distributed groups come from queues of their
            // own, with slots of their own: parents waiting for their
            // members cannot take every slot the members need.
            for queue in queues {
                workers.spawn(worker::run_queue(
                    Arc::clone(&rt),
                    Arc::clone(&erased),
                    queue,
                    self.worker_concurrency,
                    workers.clone(),
                ));
            }
        }
        let inner = Arc::new(HostInner {
            rt,
            mode,
            tasks: typed,
            workers,
            runs_workers: self.run_workers,
            operator_role: self.operator_role,
        });
        let mut by_upstream: HashMap<&'static str, Vec<Arc<dyn chain::Edge>>> = HashMap::new();
        for edge in edges {
            by_upstream.entry(edge.upstream().name).or_default().push(edge);
        }
        inner.rt.dependents.set_starter(Box::new(chain::HostStarter {
            host: Arc::downgrade(&inner),
            edges: by_upstream,
        }));
        Ok(Host { inner })
    }

    fn resolve_mode(&self) -> Result<Mode> {
        if let Some(mode) = self.mode {
            return Ok(mode);
        }
        let declared: HashSet<Mode> = self.tasks.iter().map(|t| t.definition.mode).collect();
        match declared.len() {
            0 => Ok(Mode::InProcess),
            1 => Ok(*declared.iter().next().unwrap_or(&Mode::InProcess)),
            _ => Err(Error::invalid(
                "mode",
                "the registered tasks declare different default modes; choose one with `.mode(..)`",
            )),
        }
    }

    fn resolve_infrastructure(&self, mode: Mode) -> Result<Infrastructure> {
        if mode == Mode::Distributed {
            let missing: Vec<&str> = [
                ("storage", self.storage.is_none()),
                ("publisher", self.publisher.is_none()),
                ("consumer", self.consumer.is_none()),
                ("lock", self.lock.is_none()),
                ("progress", self.progress.is_none()),
                ("state store", self.state.is_none()),
                ("idempotency store", self.idempotency.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            if !missing.is_empty() {
                return Err(Error::invalid("distributed mode", self.missing_services(&missing)));
            }
        }
        let queue = MemoryQueue::with_capacity(self.queue_capacity);
        let default_queue = self.publisher.is_none() && self.consumer.is_none();
        let depths = match &self.depths {
            Some(depths) => Some(Arc::clone(depths)),
            None if default_queue => Some(Arc::new(queue.clone()) as Arc<dyn QueueDepths>),
            None => None,
        };
        let dead_letters = match &self.dead_letters {
            Some(dead_letters) => Some(Arc::clone(dead_letters)),
            None if default_queue => Some(Arc::new(queue.clone()) as Arc<dyn DeadLetters>),
            None => None,
        };
        let (progress, cancellations) = match &self.progress {
            Some(progress) => (Arc::clone(progress), self.cancellations.clone()),
            None => {
                let tracker = Arc::new(MemoryProgressTracker::new());
                (
                    tracker.clone() as Arc<dyn ProgressTracker>,
                    Some(tracker as Arc<dyn CancellationFeed>),
                )
            }
        };
        Ok(Infrastructure {
            storage: self
                .storage
                .clone()
                .unwrap_or_else(|| Arc::new(MemoryObjectStore::new())),
            publisher: self.publisher.clone().unwrap_or_else(|| Arc::new(queue.clone())),
            consumer: self.consumer.clone().unwrap_or_else(|| Arc::new(queue)),
            lock: self.lock.clone().unwrap_or_else(|| Arc::new(MemoryLock::new())),
            progress,
            state: self.state.clone().unwrap_or_else(|| Arc::new(MemoryStateStore::new())),
            idempotency: self
                .idempotency
                .clone()
                .unwrap_or_else(|| Arc::new(MemoryIdempotencyStore::new())),
            dead_letters,
            workers: match (&self.workers, mode) {
                (Some(workers), _) => Some(Arc::clone(workers)),
                (None, Mode::InProcess) => Some(Arc::new(MemoryWorkerRegistry::new())),
                (None, Mode::Distributed) => None,
            },
            depths,
            cancellations,
            // Given with the very store and tracker it joins, or not at all.
            settlement: (self.state.is_some() && self.progress.is_some())
                .then(|| self.settlement.clone())
                .flatten(),
            lock_with_state: (self.state.is_some() && self.lock.is_some())
                .then(|| self.lock_with_state.clone())
                .flatten(),
        })
    }

    /// Why Distributed mode cannot start: the services it lacks, and, when
    /// the mode came from the tasks' declarations, which tasks chose it
    /// and the two ways out.
    fn missing_services(&self, missing: &[&str]) -> String {
        let services = missing.join(", ");
        if self.mode.is_some() {
            return format!(
                "Distributed mode needs these services, which are not configured: {services}; give them with \
                 `.infrastructure(...)` (e.g. from `dtask::distributed::DistributedOptions::connect`) or one by one"
            );
        }
        let tasks: Vec<String> = self.tasks.iter().map(|t| format!("`{}`", t.definition.name)).collect();
        format!(
            "{} declare{} Distributed mode (the default of a task that names no `mode`), which needs these \
             services, not configured: {services}; run everything in memory with `.mode(Mode::InProcess)`, or give \
             the services with `.infrastructure(...)` (e.g. from `dtask::distributed::DistributedOptions::connect`)",
            tasks.join(", "),
            if tasks.len() == 1 { "s" } else { "" },
        )
    }
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("mode", &self.mode)
            .field("format", &self.format)
            .field(
                "tasks",
                &self.tasks.iter().map(|t| t.definition.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// `<host name>:<pid>`: the kernel's host name (Linux), else `$HOSTNAME`,
/// else `localhost`.
fn default_node_name() -> String {
    format!("{}:{}", presence::host_name(), std::process::id())
}
