//! `#[depends_on(..., compensate_upstream)]`: a chain of tasks as one saga.
//! Book → Pay → Ship, each edge declared `compensate_upstream`: the chain
//! completes from its end, a failure at its end undoes every task of it
//! (the last one's steps first), and cancelling a task that awaits its
//! dependents cancels them, then it.

mod support;

use dtask::prelude::*;
use dtask::testing::{Fault, TestHost};
use dtask::{CancelOutcome, EventKind};
use serde::{Deserialize, Serialize};
use support::Journal;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Trip {
    who: String,
}

/// Holds a seat.
#[dtask::task(name = "Book", request = Trip, response = Trip, cancellable = true)]
#[custom_step(Hold, order = 1)]
#[compensation(Hold)]
#[derive(Clone)]
struct Book {
    journal: Journal,
}

impl book::Steps for Book {
    async fn hold(&self, _cx: &StepContext, input: book::HoldInput<'_>) -> Result<(), StepError> {
        self.journal.push(format!("hold {}", input.request.who));
        Ok(())
    }

    async fn compensate_hold(&self, _cx: &StepContext, request: &Trip, _data: &()) -> Result<(), StepError> {
        self.journal.push(format!("release {}", request.who));
        Ok(())
    }

    fn response(&self, outputs: book::Outputs<'_>) -> Result<Trip, StepError> {
        Ok(outputs.request.clone())
    }
}

/// Pays for the seat; Book awaits it.
#[dtask::task(name = "Pay", request = Trip, response = Trip, cancellable = true)]
#[depends_on(Book, compensate_upstream)]
#[custom_step(Debit, order = 1)]
#[compensation(Debit)]
#[derive(Clone)]
struct Pay {
    journal: Journal,
}

impl pay::Steps for Pay {
    async fn debit(&self, _cx: &StepContext, input: pay::DebitInput<'_>) -> Result<(), StepError> {
        self.journal.push(format!("debit {}", input.request.who));
        Ok(())
    }

    async fn compensate_debit(&self, _cx: &StepContext, request: &Trip, _data: &()) -> Result<(), StepError> {
        self.journal.push(format!("refund {}", request.who));
        Ok(())
    }

    fn response(&self, outputs: pay::Outputs<'_>) -> Result<Trip, StepError> {
        Ok(outputs.request.clone())
    }
}

/// Ships the ticket; Pay awaits it.
#[dtask::task(name = "Ship", request = Trip, response = Trip)]
#[depends_on(Pay, compensate_upstream = true)]
#[custom_step(Dispatch, order = 1)]
#[derive(Clone)]
struct Ship {
    journal: Journal,
}

impl ship::Steps for Ship {
    async fn dispatch(&self, _cx: &StepContext, input: ship::DispatchInput<'_>) -> Result<(), StepError> {
        self.journal.push(format!("dispatch {}", input.request.who));
        Ok(())
    }

    fn response(&self, outputs: ship::Outputs<'_>) -> Result<Trip, StepError> {
        Ok(outputs.request.clone())
    }
}

fn chain(journal: &Journal) -> TestHost {
    TestHost::with(|builder| {
        builder
            .register(Book {
                journal: journal.clone(),
            })
            .register(Pay {
                journal: journal.clone(),
            })
            .register(Ship {
                journal: journal.clone(),
            })
    })
}

fn trip() -> Trip {
    Trip { who: "ada".into() }
}

/// The progress of the task `name` started (directly or not) from `book`.
async fn progress_of(host: &TestHost, book: TaskId, name: &str) -> TaskProgress {
    let pay = TaskId::derived(book, "Pay");
    let id = match name {
        "Pay" => pay,
        "Ship" => TaskId::derived(pay, "Ship"),
        _ => book,
    };
    host.host().progress(id).await.unwrap().expect("started")
}

#[tokio::test]
async fn a_strict_chain_completes_from_its_end() {
    let journal = Journal::default();
    let host = chain(&journal);
    let book = host.run::<Book>(trip()).await.unwrap();
    assert_eq!(book.status(), TaskStatus::Completed, "{:?}", book.progress.error);
    let (pay, ship) = (
        progress_of(&host, book.progress.task_id, "Pay").await,
        progress_of(&host, book.progress.task_id, "Ship").await,
    );
    assert_eq!(
        (pay.status, ship.status),
        (TaskStatus::Completed, TaskStatus::Completed)
    );
    assert!(ship.completed_at <= pay.completed_at && pay.completed_at <= book.progress.completed_at);
    assert_eq!(journal.entries(), ["hold ada", "debit ada", "dispatch ada"]);
    let timeline = host.timeline(book.progress.task_id);
    let waited = timeline.iter().position(|e| e == "AwaitingDependents");
    assert!(waited.is_some_and(|at| timeline[at + 1] == "Completed"), "{timeline:?}");
}

#[tokio::test]
async fn a_failure_at_the_end_of_a_strict_chain_undoes_the_whole_chain() {
    let journal = Journal::default();
    let host = chain(&journal);
    host.inject("Dispatch", Fault::FailPermanently);
    let book = host.run::<Book>(trip()).await.unwrap();
    let book_id = book.progress.task_id;
    assert_eq!(book.status(), TaskStatus::Compensated);
    let error = book.progress.error.unwrap();
    assert!(
        error.starts_with("dependent task `Pay`") && error.contains("ended compensated"),
        "{error}"
    );
    let pay = progress_of(&host, book_id, "Pay").await;
    assert_eq!(pay.status, TaskStatus::Compensated);
    assert!(pay.error.unwrap().contains("dependent task `Ship`"));
    assert_eq!(
        progress_of(&host, book_id, "Ship").await.status,
        TaskStatus::Compensated
    );
    // Undone from the end of the chain back, each step once.
    assert_eq!(
        journal.entries(),
        ["hold ada", "debit ada", "refund ada", "release ada"]
    );
    let compensating = host.events(book_id).into_iter().find_map(|e| match e.kind {
        EventKind::Compensating { reason } => Some(reason),
        _ => None,
    });
    assert_eq!(compensating, Some(dtask::event::CompensationReason::DependentFailed));
}

#[tokio::test]
async fn cancelling_a_task_awaiting_its_dependent_cancels_the_dependent_then_it() {
    let journal = Journal::default();
    let host = chain(&journal);
    host.inject("Debit", Fault::Hang);
    let mut events = host.host().events();
    let handle = host.submit::<Book>(trip()).await.unwrap();
    let pay_id = TaskId::derived(handle.id(), "Pay");
    // Book awaits Pay, whose debit hangs.
    loop {
        let event = events.recv().await.expect("the host runs");
        if event.task_id == pay_id && matches!(event.kind, EventKind::StepStarted { step, .. } if step.name == "Debit")
        {
            break;
        }
    }
    assert_eq!(
        host.host().progress(handle.id()).await.unwrap().unwrap().status,
        TaskStatus::AwaitingDependents
    );

    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::Requested);
    let book = handle.wait().await.unwrap();
    assert_eq!(book.status(), TaskStatus::Cancelled, "{:?}", book.progress.error);
    let pay = progress_of(&host, handle.id(), "Pay").await;
    assert_eq!(pay.status, TaskStatus::Cancelled);
    assert!(pay.cancel_requested);
    assert_eq!(journal.entries(), ["hold ada", "release ada"]);
}
