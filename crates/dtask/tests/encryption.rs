//! Sealed messages and saga states (`encrypt_messages`,
//! `HostBuilder::encryption`): an API host and a worker host apart on
//! shared in-memory infrastructure. What the store holds never shows the
//! request; a key rotation keeps in-flight messages readable; a message
//! that does not open (a key the worker lacks, plaintext for a task that
//! demands sealing, a state moved onto another task) is dead-lettered with
//! its reason and can be replayed once the keys are right. The same against
//! the real RabbitMQ and Redis, read raw by other clients, is in
//! `encryption_wire.rs`.

mod support;
#[path = "support/vault.rs"]
mod vault;

use std::time::Duration;

use dtask::codec::KeyRing;
use dtask::infra::StoredState;
use dtask::prelude::*;
use dtask::{Error, Host, Infrastructure, Mode, Payload, RetryOutcome};
use support::shared_infrastructure;
use vault::{Deposit, MARKER, PlainVault, Vault, contains, key_ring};

const PATIENCE: Duration = Duration::from_secs(10);

fn host(infra: &Infrastructure, keys: Option<KeyRing>, run_workers: bool) -> Host {
    let builder = Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infra.clone())
        .register(Vault)
        .run_workers(run_workers);
    match keys {
        Some(keys) => builder.encryption(keys).build().unwrap(),
        None => builder.build().unwrap(),
    }
}

/// The bytes of the saga state the store holds for `task_id`.
async fn stored_bytes(infra: &Infrastructure, task_id: TaskId) -> bytes::Bytes {
    let stored = infra.state.load(task_id).await.unwrap().expect("a saved state");
    match stored.payload {
        Payload::Encoded { bytes, .. } => bytes,
        Payload::InMemory(_) => panic!("a distributed host stores encoded states"),
    }
}

/// Waits for the dead letter of `task_id` on `api` (no event tells of one:
/// this looks every 20 ms) and returns its reason.
async fn dead_letter_reason(api: &Host, task_id: TaskId) -> String {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let letters = api.dead_letters(10).await.unwrap();
            if let Some(found) = letters
                .into_iter()
                .find(|d| d.letter.message.as_ref().is_some_and(|m| m.task_id == task_id))
            {
                return found.letter.reason;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the message is dead-lettered")
}

#[tokio::test]
async fn a_sealed_task_hides_its_request_and_survives_a_key_rotation() {
    let infra = shared_infrastructure();
    // Step one of a rotation: every host holds k2, k1 still seals.
    let api = host(&infra, Some(key_ring(&["k1", "k2"])), false);
    let handle = api.submit::<Vault>(Deposit::marked()).await.unwrap();

    let sealed = stored_bytes(&infra, handle.id()).await;
    assert!(KeyRing::is_sealed(&sealed));
    assert_eq!(KeyRing::sealed_with(&sealed), Some("k1"));
    assert!(!contains(&sealed, MARKER), "the stored state shows the request");

    // Step two: the worker seals with k2 and still opens what k1 sealed.
    let worker = host(&infra, Some(key_ring(&["k2", "k1"])), true);
    let outcome = tokio::time::timeout(PATIENCE, handle.wait()).await.unwrap().unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    let receipt = outcome.response.expect("a response");
    assert_eq!(receipt.account, MARKER);

    let sealed = stored_bytes(&infra, handle.id()).await;
    assert_eq!(KeyRing::sealed_with(&sealed), Some("k2"));
    assert!(!contains(&sealed, MARKER), "the final state shows the response");
    // Step three: k1 dropped; the finished task still reads.
    let after = host(&infra, Some(key_ring(&["k2"])), false);
    let outcome = after.outcome::<Vault>(handle.id()).await.unwrap();
    assert_eq!(outcome.response.unwrap().account, MARKER);
    for host in [api, worker, after] {
        host.shutdown().await;
    }
}

#[tokio::test]
async fn a_message_sealed_with_a_key_the_worker_lacks_is_dead_lettered_then_replayed() {
    let infra = shared_infrastructure();
    let api = host(&infra, Some(key_ring(&["k1"])), false);
    let handle = api.submit::<Vault>(Deposit::marked()).await.unwrap();

    let stranger = host(&infra, Some(key_ring(&["k3"])), true);
    let reason = dead_letter_reason(&api, handle.id()).await;
    assert!(
        reason.contains("sealed with key `k1`") && reason.contains("does not hold"),
        "{reason}"
    );
    stranger.shutdown().await;
    // Nothing lost: the task waits, queued, for an operator.
    assert_eq!(
        api.progress(handle.id()).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );

    let worker = host(&infra, Some(key_ring(&["k1"])), true);
    assert_eq!(api.retry(handle.id()).await.unwrap(), RetryOutcome::Requeued);
    let outcome = tokio::time::timeout(PATIENCE, handle.wait()).await.unwrap().unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    worker.shutdown().await;
    api.shutdown().await;
}

#[tokio::test]
async fn plaintext_for_a_task_that_demands_sealing_is_dead_lettered() {
    let infra = shared_infrastructure();
    // A producer that declares the same task without `encrypt_messages`
    // and has no keys: its message is plaintext.
    let producer = Host::builder()
        .mode(Mode::Distributed)
        .infrastructure(infra.clone())
        .register(PlainVault)
        .run_workers(false)
        .build()
        .unwrap();
    let handle = producer.submit::<PlainVault>(Deposit::marked()).await.unwrap();
    assert!(contains(&stored_bytes(&infra, handle.id()).await, MARKER));

    let worker = host(&infra, Some(key_ring(&["k1"])), true);
    let reason = dead_letter_reason(&producer, handle.id()).await;
    assert!(
        reason.contains("declares `encrypt_messages`, but the payload is not sealed"),
        "{reason}"
    );
    worker.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test]
async fn a_sealed_state_moved_onto_another_task_does_not_open() {
    let infra = shared_infrastructure();
    let api = host(&infra, Some(key_ring(&["k1"])), false);
    let victim = api.submit::<Vault>(Deposit::marked()).await.unwrap();
    let other = api.submit::<Vault>(Deposit::default()).await.unwrap();
    // Whoever can write the store copies one task's sealed state onto another.
    let copied = infra.state.load(other.id()).await.unwrap().unwrap();
    infra
        .state
        .save(
            victim.id(),
            StoredState {
                fence: 0,
                payload: copied.payload,
            },
        )
        .await
        .unwrap();

    let worker = host(&infra, Some(key_ring(&["k1"])), true);
    let reason = dead_letter_reason(&api, victim.id()).await;
    assert!(
        reason.contains("cannot read the stored saga state") && reason.contains("sealed for another task"),
        "{reason}"
    );
    // The other task, untouched, completes.
    let outcome = tokio::time::timeout(PATIENCE, other.wait()).await.unwrap().unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);
    worker.shutdown().await;
    api.shutdown().await;
}

#[tokio::test]
async fn a_host_that_serializes_refuses_to_start_an_encrypt_messages_task_without_keys() {
    let refused = |result: dtask::Result<Host>| match result {
        Err(Error::Invalid { reason, .. }) => reason,
        other => panic!("expected a refusal, got {:?}", other.map(|_| "a host")),
    };
    let distributed = refused(
        Host::builder()
            .mode(Mode::Distributed)
            .infrastructure(shared_infrastructure())
            .register(Vault)
            .build(),
    );
    assert!(
        distributed.contains("`Vault` declares encrypt_messages") && distributed.contains("DTASK_ENCRYPTION_KEYS"),
        "{distributed}"
    );
    refused(
        Host::builder()
            .in_process()
            .register(Vault)
            .serialize_in_process(true)
            .build(),
    );

    // In process without serialization nothing leaves memory: it runs.
    let host = Host::builder().in_process().register(Vault).build().unwrap();
    let outcome = host
        .submit::<Vault>(Deposit::marked())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(outcome.response.unwrap().account, MARKER);
    host.shutdown().await;
}
