//! Shared helpers of the integration tests: the local Redis server, a
//! prefix of keys per test that is deleted afterwards, and a TCP proxy to
//! cut connections with.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dtask_core::progress::TaskProgress;
use dtask_core::task::{Mode, TaskDefinition};
use dtask_core::{EventKind, Format, TaskEvent, TaskId};
use dtask_redis::{RedisBackends, RedisConfig};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where the tests expect Redis.
pub const REDIS_ADDR: &str = "127.0.0.1:6379";

/// The URL of logical database `db` of the local server.
pub fn url(db: u8) -> String {
    format!("redis://{REDIS_ADDR}/{db}")
}

/// Runs the settlement conformance suite on `backends`' settlement, with
/// the state store and the tracker it joins.
pub async fn settlement_suite(backends: &RedisBackends) {
    let (settlement, state, progress) = (backends.settlement(), backends.state(), backends.progress());
    dtask_core::conformance::settlement::run_all(dtask_core::conformance::settlement::Joined {
        settlement: &settlement,
        state: &state,
        progress: &progress,
    })
    .await;
}

/// Fails the test, naming the service, when Redis does not answer.
pub async fn require_redis() {
    let connect = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(REDIS_ADDR)).await;
    match connect {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => panic!("Redis is not reachable at {REDIS_ADDR}: {error}"),
        Err(_) => panic!("Redis is not reachable at {REDIS_ADDR}: no answer within 3 s"),
    }
}

/// A key prefix no other test run uses.
pub fn unique_prefix() -> String {
    format!("dtask-test:{}:", uuid::Uuid::new_v4().simple())
}

/// A configuration for database 0 with keys under `prefix` and a
/// progress expiry short enough that leftovers vanish.
pub fn config(prefix: &str) -> RedisConfig {
    config_at(&url(0), prefix)
}

/// As [`config`], for the server at `url`.
pub fn config_at(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig::new(url)
        .with_key_prefix(prefix)
        .with_progress_expiry(Some(Duration::from_secs(600)))
}

/// Connects with `config`, after checking that Redis is up.
pub async fn connect(config: &RedisConfig) -> RedisBackends {
    require_redis().await;
    config
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to Redis: {e}"))
}

/// A plain connection to database `db`, to look at keys directly.
pub async fn raw(db: u8) -> redis::aio::MultiplexedConnection {
    require_redis().await;
    let client = redis::Client::open(url(db)).expect("client");
    client.get_multiplexed_async_connection().await.expect("raw connection")
}

/// Deletes every key of database `db` starting with `prefix`.
pub async fn delete_prefix(db: u8, prefix: &str) {
    let mut conn = raw(db).await;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await
                .expect("DEL");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A TCP proxy in front of the local Redis, whose connections a test can
/// cut ([`sever`](Self::sever)), refuse for a while ([`pause`](Self::pause))
/// or refuse for good ([`stop`](Self::stop)).
pub struct TcpProxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    paused: Arc<AtomicBool>,
}

impl TcpProxy {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        require_redis().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let links = Arc::new(Mutex::new(Vec::new()));
        let paused = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn(accept(listener, Arc::clone(&links), Arc::clone(&paused)));
        Self {
            addr,
            accept,
            links,
            paused,
        }
    }

    /// The URL of database `db` through the proxy.
    pub fn url(&self, db: u8) -> String {
        format!("redis://{}/{db}", self.addr)
    }

    /// Closes every open connection; new ones are still accepted.
    pub fn sever(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Closes every connection and drops new ones until
    /// [`resume`](Self::resume).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.sever();
    }

    /// Forwards new connections again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Closes every connection and the port.
    pub fn stop(&self) {
        self.accept.abort();
        self.sever();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(listener: TcpListener, links: Arc<Mutex<Vec<JoinHandle<()>>>>, paused: Arc<AtomicBool>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        if paused.load(Ordering::SeqCst) {
            continue;
        }
        let link = tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(REDIS_ADDR).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
        links.lock().unwrap().push(link);
    }
}

/// A step-less task for the progress tests.
pub static DEFINITION: TaskDefinition = TaskDefinition {
    name: "RedisTest",
    queue: "dtask-redis-tests",
    max_retries: 0,
    timeout: Duration::from_secs(60),
    mode: Mode::Distributed,
    format: Format::Json,
    cancellable: true,
    required_roles: &[],
    encrypt_messages: false,
    version: 1,
    steps: &[],
    groups: &[],
    depends_on: &[],
};

/// A new task's first snapshot.
pub fn new_task() -> TaskProgress {
    TaskProgress::new(TaskId::new(), &DEFINITION, OffsetDateTime::now_utc())
}

/// `progress` after `kind` happened.
pub fn after(progress: &TaskProgress, kind: EventKind) -> TaskProgress {
    let mut next = progress.clone();
    next.apply(&TaskEvent {
        task_id: progress.task_id,
        at: OffsetDateTime::now_utc(),
        kind,
    });
    next
}
