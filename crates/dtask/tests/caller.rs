//! The host as one principal sees it (`Host::caller`): a task records who
//! submitted it; another subject meets it as a task that does not exist;
//! an operator sees and manages every task; `requires_role` gates
//! submission. The library's own scoping, without HTTP.

mod support;

use dtask::infra::ProgressQuery;
use dtask::prelude::*;
use dtask::{CancelOutcome, Error, Principal};
use serde::{Deserialize, Serialize};
use support::{OrderRequest, PlaceOrder};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Note {
    text: String,
}

/// Only holders of `auditor` may submit it.
#[dtask::task(name = "Audit", request = Note, response = String, queue = "audit", mode = InProcess, requires_role = "auditor")]
#[custom_step(Record, order = 1, output = String)]
#[derive(Debug, Default)]
struct Audit;

impl audit::Steps for Audit {
    async fn record(&self, _cx: &StepContext, input: audit::RecordInput<'_>) -> Result<String, StepError> {
        Ok(input.request.text.clone())
    }

    fn response(&self, outputs: audit::Outputs<'_>) -> Result<String, StepError> {
        Ok(outputs.record.clone())
    }
}

fn host() -> Host {
    Host::builder()
        .mode(Mode::InProcess)
        .register(PlaceOrder::default())
        .register(Audit)
        .build()
        .unwrap()
}

fn order(item: &str) -> OrderRequest {
    OrderRequest {
        item: item.into(),
        ..OrderRequest::default()
    }
}

#[tokio::test]
async fn another_subject_meets_a_task_it_did_not_submit_as_an_unknown_one() {
    let host = host();
    let alice = host.caller(Principal::new("alice", ["buyer"]));
    let bob = host.caller(Principal::new("bob", ["buyer"]));
    let operator = host.caller(Principal::new("ops", [host.operator_role()]));
    let handle = alice.submit::<PlaceOrder>(order("lamp")).await.unwrap();
    let ended = handle.wait().await.unwrap();
    let id = handle.id();
    assert_eq!(ended.progress.submitter.as_deref(), Some("alice"));

    assert!(alice.progress(id).await.unwrap().is_some());
    assert!(operator.progress(id).await.unwrap().is_some());
    assert!(bob.progress(id).await.unwrap().is_none());
    assert!(matches!(bob.stream(id).await, Err(Error::NotFound { .. })));
    assert!(matches!(bob.cancel(id).await, Err(Error::NotFound { .. })));
    assert!(matches!(bob.retry(id).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        bob.outcome::<PlaceOrder>(id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(alice.outcome::<PlaceOrder>(id).await.unwrap().response.is_some());
    assert!(matches!(
        operator.cancel(id).await,
        Ok(CancelOutcome::AlreadyEnded(TaskStatus::Completed))
    ));

    let everything = ProgressQuery::default();
    assert_eq!(alice.list(&everything).await.unwrap().total, 1);
    assert_eq!(
        bob.list(&everything).await.unwrap().total,
        0,
        "bob lists none of alice's"
    );
    assert_eq!(operator.list(&everything).await.unwrap().total, 1);
    host.shutdown().await;
}

#[tokio::test]
async fn requires_role_gates_submission_and_dead_letters_are_the_operators() {
    let host = host();
    let clerk = host.caller(Principal::new("clerk", ["buyer"]));
    let auditor = host.caller(Principal::new("ann", ["auditor"]));
    let refused = clerk.submit::<Audit>(Note { text: "x".into() }).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Forbidden { reason } if reason.contains("`auditor`")),
        "{refused}"
    );
    let outcome = auditor
        .submit::<Audit>(Note { text: "ok".into() })
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(outcome.response.as_deref(), Some("ok"));
    // The host itself submits without a principal: no role is checked.
    assert!(host.submit::<Audit>(Note::default()).await.is_ok());

    assert!(matches!(clerk.dead_letters(10).await, Err(Error::Forbidden { .. })));
    let operator = host.caller(Principal::operator(host.operator_role()));
    assert!(operator.dead_letters(10).await.unwrap().is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn a_batch_a_caller_submits_is_its_own_and_gated_by_role() {
    let host = host();
    let alice = host.caller(Principal::new("alice", ["buyer"]));
    let bob = host.caller(Principal::new("bob", ["buyer"]));
    let results = alice
        .submit_many::<PlaceOrder>(["cup", "mug"].map(order))
        .await
        .unwrap();
    for result in results {
        let handle = result.expect("handed over");
        let ended = handle.wait().await.unwrap();
        assert_eq!(ended.progress.submitter.as_deref(), Some("alice"));
        assert!(
            bob.progress(handle.id()).await.unwrap().is_none(),
            "bob sees alice's task"
        );
    }

    let refused = alice.submit_many::<Audit>([Note::default()]).await;
    assert!(matches!(refused, Err(Error::Forbidden { .. })), "{refused:?}");
    let auditor = host.caller(Principal::new("carol", ["auditor"]));
    let results = auditor.submit_many::<Audit>([Note::default()]).await.unwrap();
    assert_eq!(results.len(), 1);
    let ended = results[0].as_ref().unwrap().wait().await.unwrap();
    assert_eq!(ended.progress.submitter.as_deref(), Some("carol"));
}
