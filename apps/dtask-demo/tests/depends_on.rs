//! `#[depends_on]`: ValidateInventory → ChargePayment, the design's
//! "Toward BPM" pair. A validated order starts its charge (linked to it by
//! `parentTaskId`, with the request built from the upstream's response); an
//! order short of stock completes without starting it, and records why; a
//! failed charge leaves the reservation alone; the downstream task shows in
//! the history with its parent; a host without the upstream registered is
//! refused.

use dtask::infra::TaskHistory;
use dtask::memory::MemoryTaskHistory;
use dtask::prelude::*;
use dtask::{EventKind, HistorySettings, Host, TaskOutcome};
use dtask_demo::orders::{
    ChargePayment, Gateway, InventoryReport, OrderLine, OrderRequest, Receipt, Stock, ValidateInventory,
};
use futures::StreamExt;
use std::sync::Arc;

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
