//! `#[depends_on]`: ValidateInventory → ChargePayment, the design's
//! "Toward BPM" pair. A validated order starts its charge (linked to it by
//! `parentTaskId`, with the request built from the upstream's response); an
//! order short of stock completes without starting it, and records why; a
//! failed charge leaves the reservation alone; the downstream task shows in
//! the history with its parent; a host without the upstream registered is
//! refused.
//!
//! With an edge declared `compensate_upstream` (the `StrictCharge` below),
//! the order waits for its charge: it completes once the charge completed,
//! and a declined charge releases the reservation. A resumption delivered
//! twice, or lost to a failed publish and redelivered, concludes the order
//! once: in memory, and on RabbitMQ and Redis Streams with the API and the
//! worker on connections of their own.

use async_trait::async_trait;
use dtask::infra::{QueueMessage, QueuePublisher, TaskHistory};
use dtask::memory::MemoryQueue;
use dtask::memory::MemoryTaskHistory;
use dtask::prelude::*;
use dtask::{EventKind, HistorySettings, Host, TaskOutcome};
use dtask_demo::orders::{
    ChargePayment, ChargeRequest, Gateway, InventoryReport, OrderLine, OrderRequest, Receipt, Stock, ValidateInventory,
    charge_for,
};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

fn host(stock: &Stock, gateway: &Gateway, history: Option<Arc<MemoryTaskHistory>>) -> Host {
    let mut builder = Host::builder()
        .register(ValidateInventory { stock: stock.clone() })
        .register(ChargePayment {
            gateway: gateway.clone(),
        })
        .serialize_in_process(true);
    if let Some(history) = history {
        builder = builder.history_with(history as Arc<dyn TaskHistory>, HistorySettings::default());
    }
    builder.build().expect("a host")
}

fn order(id: &str, quantity: u32, card: &str) -> OrderRequest {
    OrderRequest {
        order_id: id.to_owned(),
        lines: vec![
            OrderLine {
                sku: "widget".into(),
                quantity,
                unit_price_cents: 250,
            },
            OrderLine {
                sku: "gadget".into(),
                quantity: 1,
                unit_price_cents: 1000,
            },
        ],
        card_token: card.to_owned(),
    }
}

/// Runs ValidateInventory on `order` to its end.
async fn validate(host: &Host, order: OrderRequest) -> TaskOutcome<InventoryReport> {
    let handle = host.submit::<ValidateInventory>(order).await.unwrap();
    handle.wait().await.unwrap()
}

/// Follows task `task_id` (which may not exist yet) to its end.
async fn finish(host: &Host, task_id: TaskId) -> TaskProgress {
    let mut events = host.events();
    // It may have started (and ended) before this subscription.
    if let Ok(Some(progress)) = host.progress(task_id).await
        && progress.is_terminal()
    {
        return progress;
    }
    loop {
        match events.recv().await {
            Ok(event) if event.task_id == task_id => {
                if let Ok(Some(progress)) = host.progress(task_id).await
                    && progress.is_terminal()
                {
                    return progress;
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Ok(Some(progress)) = host.progress(task_id).await
                    && progress.is_terminal()
                {
                    return progress;
                }
            }
            Err(error) => panic!("the host stopped: {error}"),
        }
    }
}

#[tokio::test]
async fn a_validated_order_starts_its_charge_linked_to_it() {
    let (stock, gateway) = (Stock::with([("widget", 5), ("gadget", 2)]), Gateway::default());
    let history = Arc::new(MemoryTaskHistory::new());
    let host = host(&stock, &gateway, Some(Arc::clone(&history)));
    let upstream = validate(&host, order("o-1", 3, "tok_visa")).await;
    assert_eq!(
        upstream.status(),
        TaskStatus::Completed,
        "{:?}",
        upstream.progress.error
    );
    let upstream_id = upstream.progress.task_id;

    // The upstream recorded its dependent, started, and why.
    let [dependent] = upstream.progress.dependents.as_slice() else {
        panic!("one dependent: {:?}", upstream.progress.dependents)
    };
    assert_eq!(dependent.task_name, "ChargePayment");
    assert!(dependent.started);
    assert_eq!(dependent.task_id, TaskId::derived(upstream_id, "ChargePayment"));
    let condition = dependent.condition.as_ref().unwrap();
    assert_eq!(condition.expression, "response.all_in_stock");
    assert!(condition.holds);
    assert_eq!(condition.observed[0].path, "response.all_in_stock");
    assert_eq!(condition.observed[0].value, "true");

    // The charge ran from the upstream's response, linked to it.
    let charge = finish(&host, dependent.task_id).await;
    assert_eq!(charge.status, TaskStatus::Completed, "{:?}", charge.error);
    assert_eq!(charge.task_name, "ChargePayment");
    assert_eq!(charge.parent_task_id, Some(upstream_id));
    let receipt: Receipt = host
        .outcome::<ChargePayment>(dependent.task_id)
        .await
        .unwrap()
        .into_response()
        .unwrap();
    assert_eq!(receipt.amount_cents, 3 * 250 + 1000);
    assert_eq!(gateway.captured(), [("pay-o-1".to_owned(), 1750)]);
    assert_eq!(stock.left("widget"), 2);

    // The history keeps the link.
    host.shutdown().await;
    let record = history
        .task(dependent.task_id)
        .await
        .unwrap()
        .expect("the dependent's record");
    assert_eq!(record.task.progress.parent_task_id, Some(upstream_id));
    let upstream_record = history.task(upstream_id).await.unwrap().expect("the upstream's record");
    assert!(upstream_record.task.progress.dependents[0].started);
    assert!(
        upstream_record
            .audit
            .iter()
            .any(|entry| entry.action == "dependentsDecided"),
        "the audit log says which dependents started"
    );
}

#[tokio::test]
async fn an_order_short_of_stock_completes_without_starting_its_charge() {
    let (stock, gateway) = (Stock::with([("widget", 1), ("gadget", 2)]), Gateway::default());
    let host = host(&stock, &gateway, None);
    let mut events = host.events();
    let upstream = validate(&host, order("o-2", 3, "tok_visa")).await;
    assert_eq!(upstream.status(), TaskStatus::Completed);
    let dependent = &upstream.progress.dependents[0];
    assert!(!dependent.started);
    let condition = dependent.condition.as_ref().unwrap();
    assert!(!condition.holds);
    assert_eq!(condition.observed[0].value, "false", "recorded why: {condition:?}");
    assert!(host.progress(dependent.task_id).await.unwrap().is_none(), "not started");
    // Nothing but the upstream's events: no task was submitted.
    host.shutdown().await;
    while let Ok(event) = events.try_recv() {
        assert_eq!(event.task_id, upstream.progress.task_id, "{:?}", event.kind);
        if let EventKind::DependentsDecided { dependents } = &event.kind {
            assert_eq!(dependents, &upstream.progress.dependents);
        }
    }
    assert_eq!(stock.left("widget"), 1, "nothing reserved");
    assert!(gateway.captured().is_empty());
}

#[tokio::test]
async fn a_failed_charge_does_not_compensate_the_validated_order() {
    let (stock, gateway) = (Stock::with([("widget", 5), ("gadget", 2)]), Gateway::default());
    let host = host(&stock, &gateway, None);
    let upstream = validate(&host, order("o-3", 2, "declined_card")).await;
    assert_eq!(upstream.status(), TaskStatus::Completed);
    let charge = finish(&host, upstream.progress.dependents[0].task_id).await;
    assert_eq!(charge.status, TaskStatus::Compensated, "{:?}", charge.error);
    assert!(charge.error.as_deref().unwrap().contains("declined"));
    // The upstream stays completed; its reservation stands.
    let after = host.progress(upstream.progress.task_id).await.unwrap().unwrap();
    assert_eq!(after.status, TaskStatus::Completed);
    assert_eq!(stock.left("widget"), 3);
    let mut stream = host.stream(upstream.progress.task_id).await.unwrap();
    assert_eq!(stream.next().await.unwrap().status, TaskStatus::Completed);
    host.shutdown().await;
}

#[tokio::test]
async fn a_dependent_without_its_upstream_registered_is_refused_at_build() {
    let error = Host::builder()
        .register(ChargePayment::default())
        .build()
        .expect_err("the upstream is missing");
    assert!(
        error
            .to_string()
            .contains("`ChargePayment` depends on `ValidateInventory`, which is not registered"),
        "{error}"
    );
}

/// ChargePayment declared `compensate_upstream`: the order it charges
/// waits for it, and is compensated (its reservation released) when the
/// charge does not complete.
#[dtask::task(
    name = "StrictCharge",
    request = ChargeRequest,
    response = Receipt,
    queue = "orders",
    max_retries = 1,
    mode = InProcess
)]
#[depends_on(ValidateInventory, condition = response.all_in_stock, request = charge_for, compensate_upstream)]
#[custom_step(AuthorizeCard, order = 1, output = String)]
#[compensation(AuthorizeCard)]
#[custom_step(CapturePayment, order = 2, inputs(authorize_card), output = String)]
#[derive(Debug, Clone, Default)]
struct StrictCharge {
    gateway: Gateway,
}

impl strict_charge::Steps for StrictCharge {
    async fn authorize_card(
        &self,
        _cx: &StepContext,
        input: strict_charge::AuthorizeCardInput<'_>,
    ) -> Result<String, StepError> {
        self.gateway.authorize(input.request)
    }

    async fn compensate_authorize_card(
        &self,
        _cx: &StepContext,
        _request: &ChargeRequest,
        data: &String,
    ) -> Result<(), StepError> {
        self.gateway.release(data);
        Ok(())
    }

    async fn capture_payment(
        &self,
        _cx: &StepContext,
        input: strict_charge::CapturePaymentInput<'_>,
    ) -> Result<String, StepError> {
        self.gateway.capture(input.authorize_card)
    }

    fn response(&self, outputs: strict_charge::Outputs<'_>) -> Result<Receipt, StepError> {
        Ok(Receipt::of(outputs.request, outputs.capture_payment))
    }
}

/// What [`Resumptions`] does to the messages resuming ValidateInventory.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Publishes each twice.
    Duplicate,
    /// Refuses the first.
    FailFirst,
}

/// A publisher applying `fault` to the messages resuming ValidateInventory:
/// its messages after the first `hand_offs`.
#[derive(Debug, Clone)]
struct Resumptions {
    inner: Arc<dyn QueuePublisher>,
    fault: Fault,
    hand_offs: u32,
    seen: Arc<AtomicU32>,
}

impl Resumptions {
    fn new(inner: Arc<dyn QueuePublisher>, fault: Fault, hand_offs: u32) -> Self {
        let seen = Arc::new(AtomicU32::new(0));
        Self {
            inner,
            fault,
            hand_offs,
            seen,
        }
    }
}

#[async_trait]
impl QueuePublisher for Resumptions {
    async fn publish(&self, queue: &str, message: QueueMessage) -> dtask::Result<()> {
        if message.task_name != "ValidateInventory" {
            return self.inner.publish(queue, message).await;
        }
        let resumption = self.seen.fetch_add(1, Ordering::SeqCst).checked_sub(self.hand_offs);
        match (self.fault, resumption) {
            (_, None) => self.inner.publish(queue, message).await,
            (Fault::Duplicate, Some(_)) => {
                self.inner.publish(queue, message.clone()).await?;
                self.inner.publish(queue, message).await
            }
            (Fault::FailFirst, Some(0)) => Err(dtask::Error::backend(
                "test queue",
                "the connection was cut while publishing",
            )),
            (Fault::FailFirst, Some(_)) => self.inner.publish(queue, message).await,
        }
    }
}

/// A host running ValidateInventory and StrictCharge, its queue's
/// publisher with `fault` when given.
fn strict_host(stock: &Stock, gateway: &Gateway, fault: Option<Fault>) -> Host {
    let mut builder = Host::builder()
        .register(ValidateInventory { stock: stock.clone() })
        .register(StrictCharge {
            gateway: gateway.clone(),
        })
        .serialize_in_process(true);
    if let Some(fault) = fault {
        let queue = MemoryQueue::new();
        let resumptions = Resumptions::new(Arc::new(queue.clone()), fault, 1);
        builder = builder.queue(queue).publisher(resumptions);
    }
    builder.build().expect("a host")
}

/// The kinds of the events of `task_id` received on `events`, in order.
fn kinds_of(events: &mut tokio::sync::broadcast::Receiver<dtask::TaskEvent>, task_id: TaskId) -> Vec<EventKind> {
    let mut kinds = Vec::new();
    while let Ok(event) = events.try_recv() {
        if event.task_id == task_id {
            kinds.push(event.kind);
        }
    }
    kinds
}

/// Checks that a declined StrictCharge compensated the order once: its
/// reservation released, its error naming the charge.
async fn assert_released_once(host: &Host, stock: &Stock, gateway: &Gateway, order: TaskOutcome<InventoryReport>) {
    let progress = &order.progress;
    assert_eq!(progress.status, TaskStatus::Compensated, "{:?}", progress.error);
    let error = progress.error.as_deref().unwrap();
    assert!(
        error.contains("dependent task `StrictCharge`")
            && error.contains("ended compensated")
            && error.contains("declined"),
        "{error}"
    );
    let charge = host.progress(progress.dependents[0].task_id).await.unwrap().unwrap();
    assert_eq!(charge.status, TaskStatus::Compensated);
    assert_eq!(charge.parent_task_id, Some(progress.task_id));
    assert_eq!(stock.left("widget"), 5, "the reservation is released, once");
    assert_eq!(stock.left("gadget"), 2);
    assert!(gateway.captured().is_empty());
    assert!(order.into_response().is_err(), "a compensated order has no response");
}

#[tokio::test]
async fn an_order_awaiting_its_strict_charge_completes_once_the_charge_completed() {
    let (stock, gateway) = (Stock::with([("widget", 5), ("gadget", 2)]), Gateway::default());
    let host = strict_host(&stock, &gateway, None);
    let mut events = host.events();
    let order = validate(&host, order("o-4", 3, "tok_visa")).await;
    assert_eq!(order.status(), TaskStatus::Completed, "{:?}", order.progress.error);
    let order_id = order.progress.task_id;
    let dependent = &order.progress.dependents[0];
    assert!(dependent.started && dependent.compensates_upstream, "{dependent:?}");
    let charge = host.progress(dependent.task_id).await.unwrap().unwrap();
    assert_eq!(charge.status, TaskStatus::Completed, "ended before the order completed");
    assert!(charge.completed_at <= order.progress.completed_at);
    assert_eq!(gateway.captured(), [("pay-o-4".to_owned(), 1750)]);
    assert_eq!(stock.left("widget"), 2, "the reservation stands");
    let report = order.into_response().unwrap();
    assert_eq!(report.amount_cents, 1750);

    // The order waited (saved, shown) between its last step and its end.
    let kinds: Vec<&str> = kinds_of(&mut events, order_id)
        .iter()
        .filter_map(|kind| match kind {
            EventKind::StepCompleted { .. } => Some("step"),
            EventKind::AwaitingDependents => Some("awaiting"),
            EventKind::Completed => Some("completed"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["step", "step", "awaiting", "completed"]);
    host.shutdown().await;
}

#[tokio::test]
async fn a_declined_strict_charge_releases_the_reservation_of_the_order() {
    let (stock, gateway) = (Stock::with([("widget", 5), ("gadget", 2)]), Gateway::default());
    let host = strict_host(&stock, &gateway, None);
    let mut events = host.events();
    let order = validate(&host, order("o-5", 3, "declined_card")).await;
    let order_id = order.progress.task_id;
    assert_released_once(&host, &stock, &gateway, order).await;
    let kinds = kinds_of(&mut events, order_id);
    assert!(
        kinds.iter().any(|kind| matches!(
            kind,
            EventKind::Compensating {
                reason: dtask::event::CompensationReason::DependentFailed
            }
        )),
        "{kinds:?}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn an_order_resumed_twice_is_compensated_once() {
    let (stock, gateway) = (Stock::with([("widget", 5), ("gadget", 2)]), Gateway::default());
    let host = strict_host(&stock, &gateway, Some(Fault::Duplicate));
    let mut events = host.events();
    let order = validate(&host, order("o-6", 3, "declined_card")).await;
    let order_id = order.progress.task_id;
    assert_released_once(&host, &stock, &gateway, order).await;
    // The second resumption found the order ended; once it is taken, the
    // queue is empty.
    host.shutdown().await;
    let undone = kinds_of(&mut events, order_id)
        .into_iter()
        .filter(|kind| matches!(kind, EventKind::StepCompensated { .. }))
        .count();
    assert_eq!(undone, 1, "ReserveItems undone once");
}

#[tokio::test]
async fn a_resumption_lost_to_a_failed_publish_comes_back_with_the_charge() {
    let (stock, gateway) = (Stock::with([("widget", 5), ("gadget", 2)]), Gateway::default());
    let host = strict_host(&stock, &gateway, Some(Fault::FailFirst));
    let order = validate(&host, order("o-7", 3, "declined_card")).await;
    // The charge's message was handed back when its resumption could not
    // be sent; its redelivery found it ended and sent it again.
    assert_released_once(&host, &stock, &gateway, order).await;
    host.shutdown().await;
}

/// The strict chain on the real backends, the API and the worker each on
/// connections of their own, as separate processes would be.
mod real_backends {
    use super::*;
    use dtask::Mode;
    use dtask::distributed::{DistributedOptions, QueueKind};

    /// An API host and a worker host on `queue`, in a namespace of their
    /// own; the worker's publisher applies `fault` to the resumptions it
    /// sends.
    async fn cluster(queue: QueueKind, fault: Fault, stock: &Stock, gateway: &Gateway) -> (Host, Host) {
        let options = DistributedOptions::new(queue).namespace(format!("chain-{}", TaskId::new()));
        let mut hosts = Vec::new();
        for workers in [false, true] {
            let mut infra = options.connect(&[]).await.expect("the services the tests need");
            if workers {
                let resumptions = Resumptions::new(Arc::clone(&infra.publisher), fault, 0);
                infra.publisher = Arc::new(resumptions);
            }
            let host = Host::builder()
                .mode(Mode::Distributed)
                .infrastructure(infra)
                .register(ValidateInventory { stock: stock.clone() })
                .register(StrictCharge {
                    gateway: gateway.clone(),
                })
                .run_workers(workers)
                .build()
                .unwrap();
            hosts.push(host);
        }
        let worker = hosts.pop().unwrap();
        (hosts.pop().unwrap(), worker)
    }

    async fn strict_chain_on(queue: QueueKind, fault: Fault) {
        let (stock, gateway) = (Stock::with([("widget", 10), ("gadget", 2)]), Gateway::default());
        let (api, worker) = cluster(queue, fault, &stock, &gateway).await;
        let charged = validate(&api, order("o-8", 3, "tok_visa")).await;
        assert_eq!(charged.status(), TaskStatus::Completed, "{:?}", charged.progress.error);
        assert_eq!(gateway.captured(), [("pay-o-8".to_owned(), 1750)]);
        assert_eq!(stock.left("widget"), 7);

        let declined = validate(&api, order("o-9", 3, "declined_card")).await;
        assert_eq!(
            declined.status(),
            TaskStatus::Compensated,
            "{:?}",
            declined.progress.error
        );
        assert!(declined.progress.error.as_deref().unwrap().contains("declined"));
        assert_eq!(stock.left("widget"), 7, "the declined order's reservation is released");
        assert_eq!(gateway.captured().len(), 1);
        worker.shutdown().await;
        api.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_strict_chain_on_rabbitmq_resumed_twice() {
        strict_chain_on(QueueKind::RabbitMq, Fault::Duplicate).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_strict_chain_on_redis_streams_with_a_resumption_refused() {
        strict_chain_on(QueueKind::RedisStreams, Fault::FailFirst).await;
    }
}
