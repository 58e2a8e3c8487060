//! The durable history in PostgreSQL beside Redis: after Redis is wiped
//! (its progress, states and locks gone), the history still answers every
//! ended task, with its audit log in order, its actor and its trace id.
//!
//! The deployment's Redis is database 13 of the local server, wiped with
//! `FLUSHDB`: the same loss as a `FLUSHALL` for this deployment, without
//! touching what other tests keep in database 0.

#![cfg(feature = "distributed")]

mod support;

use std::time::Duration;

use dtask::distributed::dtask_postgres::PostgresConfig;
use dtask::distributed::dtask_redis::RedisConfig;
use dtask::history::HistoryQuery;
use dtask::memory::{MemoryObjectStore, MemoryQueue};
use dtask::{Host, Mode, Principal, TaskStatus};
use support::{OrderRequest, PlaceOrder};

const REDIS: &str = "redis://127.0.0.1:6379/13";

fn database_url() -> String {
    std::env::var("DTASK_DATABASE_URL").unwrap_or_else(|_| "postgres://dtask:dtask@127.0.0.1:5432/dtask_test".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_answers_every_ended_task_after_redis_is_wiped() {
    let redis = RedisConfig::new(REDIS)
        .with_connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {REDIS}: {e}"));
    let postgres = PostgresConfig::new(database_url())
        .with_connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable (run scripts/test): {e}"));
    let queue = MemoryQueue::new();
    let host = Host::builder()
        .mode(Mode::Distributed)
        .register(PlaceOrder::default())
        .storage(MemoryObjectStore::new())
        .queue(queue)
        .lock(redis.lock())
        .progress(redis.progress())
        .state_store(redis.state())
        .idempotency_store(redis.idempotency())
        .history(postgres.history())
        .node_name("history-test")
        .build()
        .unwrap();
    // A task name of this run alone, so the list is this run's.
    let subject = format!("wiped-{}", dtask::TaskId::new());
    let caller = host.caller(Principal::new(subject.clone(), Vec::<String>::new()));
    let mut ended = Vec::new();
    for i in 0..6 {
        let request = OrderRequest {
            item: format!("item-{i}"),
            charge_failures: 0,
            ship_fails: i % 3 == 2,
        };
        let outcome = caller
            .submit::<PlaceOrder>(request)
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        ended.push(outcome.progress);
    }
    tokio::time::timeout(Duration::from_secs(30), host.flush_history())
        .await
        .expect("the history is written");

    let mut client = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("FLUSHDB").query_async(&mut client).await.unwrap();
    for progress in &ended {
        assert!(
            host.progress(progress.task_id).await.unwrap().is_none(),
            "Redis forgot the task"
        );
    }

    let mut listed = Vec::new();
    let mut query = HistoryQuery {
        limit: 4,
        ..HistoryQuery::default()
    };
    loop {
        let page = caller.history_list(&query).await.unwrap();
        listed.extend(page.items);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    let mut newest_first = ended.clone();
    newest_first.reverse();
    assert_eq!(
        listed.iter().map(|r| &r.progress).collect::<Vec<_>>(),
        newest_first.iter().collect::<Vec<_>>(),
        "every ended task, newest first, as it ended"
    );
    let statuses: Vec<TaskStatus> = ended.iter().map(|p| p.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == TaskStatus::Compensated).count(), 2);

    let failed = &ended[2];
    let history = caller
        .task_history(failed.task_id)
        .await
        .unwrap()
        .expect("in the history");
    let trace_id = failed.trace_id.as_deref().unwrap();
    let actions: Vec<(&str, &str)> = history
        .audit
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    let system = "system:history-test";
    assert_eq!(
        actions,
        [
            ("submit", subject.as_str()),
            ("handedOff", system),
            ("started", system),
            ("stepStarted", system),
            ("stepCompleted", system),
            ("stepStarted", system),
            ("stepCompleted", system),
            ("stepStarted", system),
            ("stepFailed", system),
            ("compensating", system),
            ("stepCompensating", system),
            ("stepCompensated", system),
            ("stepCompensating", system),
            ("stepCompensated", system),
            ("compensated", system),
        ],
        "the audit log in order, with its actors"
    );
    assert!(history.audit.iter().all(|e| e.trace_id.as_deref() == Some(trace_id)));
    let ship = history.attempts.iter().find(|a| a.step == "Ship").unwrap();
    assert_eq!(ship.error.as_deref(), Some("no courier"));
    host.shutdown().await;
}
