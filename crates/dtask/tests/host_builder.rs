//! The host builder: modes, overrides, the serializer switch, back-pressure.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use dtask::prelude::*;
use dtask::testing::TestHost;
use serde::{Deserialize, Serialize};
use support::{OrderRequest, PlaceOrder};

#[tokio::test]
async fn distributed_mode_names_the_services_it_lacks() {
    let error = Host::builder()
        .register(PlaceOrder::default())
        .mode(Mode::Distributed)
        .build()
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("publisher") && message.contains("lock") && message.contains("state store"),
        "{message}"
    );
}

/// A task that names no mode: Distributed, as the design says.
#[dtask::task(name = "Ping", request = Tally, response = usize, queue = "ping")]
#[custom_step(Answer, order = 1, output = usize)]
#[derive(Debug, Default)]
struct Ping;

impl ping::Steps for Ping {
    async fn answer(&self, _cx: &StepContext, _input: ping::AnswerInput<'_>) -> Result<usize, StepError> {
        Ok(1)
    }

    fn response(&self, outputs: ping::Outputs<'_>) -> Result<usize, StepError> {
        Ok(*outputs.answer)
    }
}

#[tokio::test]
async fn a_task_that_names_no_mode_says_how_to_run_it_when_nothing_is_configured() {
    let error = Host::builder().register(Ping).build().unwrap_err();
    let message = error.to_string();
    for expected in [
        "`Ping` declares Distributed mode",
        "the default of a task that names no `mode`",
        "`.mode(Mode::InProcess)`",
        "`.infrastructure(...)`",
    ] {
        assert!(message.contains(expected), "{expected:?} is not in: {message}");
    }
    // The first way out works.
    let host = Host::builder().register(Ping).mode(Mode::InProcess).build().unwrap();
    let outcome = host.submit::<Ping>(Tally).await.unwrap().wait().await.unwrap();
    assert_eq!(outcome.response, Some(1));
    host.shutdown().await;
}

#[tokio::test]
async fn the_declared_mode_is_the_default() {
    let host = Host::builder().register(PlaceOrder::default()).build().unwrap();
    assert_eq!(host.mode(), Mode::InProcess);
    host.shutdown().await;
}

#[tokio::test]
async fn submitting_an_unregistered_task_is_a_clear_error() {
    let host = Host::builder().build().unwrap();
    let error = host.submit::<PlaceOrder>(OrderRequest::default()).await.unwrap_err();
    assert!(error.to_string().contains("`PlaceOrder` is not registered"), "{error}");
}

#[tokio::test]
async fn a_full_in_memory_queue_makes_the_submitter_wait() {
    let host = Host::builder()
        .register(PlaceOrder::default())
        .queue_capacity(1)
        .run_workers(false)
        .build()
        .unwrap();
    host.submit::<PlaceOrder>(OrderRequest::default()).await.unwrap();
    let blocked = tokio::time::timeout(
        Duration::from_millis(200),
        host.submit::<PlaceOrder>(OrderRequest::default()),
    )
    .await;
    assert!(blocked.is_err(), "the second hand-off waits for room in the queue");
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally;

/// JSON cannot encode a map with tuple keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Grid {
    cells: BTreeMap<(u8, u8), u8>,
}

#[dtask::task(name = "Count", request = Tally, response = usize, queue = "count", mode = InProcess)]
#[custom_step(Fill, order = 1, output = Grid)]
#[derive(Debug, Default)]
struct Count;

impl count::Steps for Count {
    async fn fill(&self, _cx: &StepContext, _input: count::FillInput<'_>) -> Result<Grid, StepError> {
        Ok(Grid {
            cells: BTreeMap::from([((0, 0), 1), ((0, 1), 2)]),
        })
    }

    fn response(&self, outputs: count::Outputs<'_>) -> Result<usize, StepError> {
        Ok(outputs.fill.cells.len())
    }
}

#[tokio::test]
async fn in_process_hand_offs_share_typed_values_without_serializing() {
    let host = TestHost::with(|b| b.register(Count).serialize_in_process(false));
    let outcome = host.run::<Count>(Tally).await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);
    assert_eq!(outcome.response, Some(2));
}

#[tokio::test]
async fn the_serialize_switch_catches_state_a_broker_could_not_carry() {
    let host = TestHost::with(|b| b.register(Count).serialize_in_process(true));
    let outcome = host.run::<Count>(Tally).await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Compensated);
    let error = outcome.progress.error.unwrap();
    assert!(
        error.contains("cannot be serialized") && error.contains("key must be a string"),
        "{error}"
    );
}
