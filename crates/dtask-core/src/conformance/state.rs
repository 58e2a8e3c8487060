//! Checks for [`SagaStateStore`] backends.
//!
//! Every check works on fresh task ids and deletes what it saved.

use super::within;
use crate::codec::{Codec, Format, Payload};
use crate::error::Error;
use crate::id::TaskId;
use crate::infra::{SagaStateStore, StoredState};

/// Runs every check of this module against `store`.
pub async fn run_all(store: &dyn SagaStateStore) {
    save_and_load(store).await;
    every_format_is_kept(store).await;
    save_replaces(store).await;
    missing_is_none(store).await;
    delete_is_idempotent(store).await;
    fencing(store).await;
    save_many_answers_each(store).await;
}

/// `save_many` saves each state and answers each: a stale fence is
/// refused for its task only.
pub async fn save_many_answers_each(store: &dyn SagaStateStore) {
    let (held, fresh) = (TaskId::new(), TaskId::new());
    save(store, held, state(5, "holder five")).await;
    let batch = vec![(held, state(3, "stale holder")), (fresh, state(1, "first holder"))];
    let results = within("save_many", store.save_many(batch)).await;
    assert_eq!(results.len(), 2, "save_many: one result per state");
    assert!(
        matches!(
            results[0],
            Err(Error::Fenced {
                presented: 3,
                current: 5
            })
        ),
        "save_many: a stale token must be Fenced, got {:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "save_many: a fresh task failed: {:?}", results[1]);
    assert_same(
        load(store, held).await,
        &state(5, "holder five"),
        "save_many: the fenced task",
    );
    assert_same(
        load(store, fresh).await,
        &state(1, "first holder"),
        "save_many: the fresh task",
    );
    delete(store, held).await;
    delete(store, fresh).await;
}

/// A snapshot written by fencing token `fence`, holding `step`.
pub(super) fn state(fence: u64, step: &str) -> StoredState {
    let body = serde_json::json!({ "step": step, "note": "état ✓", "big": u64::MAX });
    let payload = Codec::new(Format::Json).encode(&body).expect("encoding a test payload");
    StoredState { fence, payload }
}

async fn save(store: &dyn SagaStateStore, task_id: TaskId, state: StoredState) {
    within("save", store.save(task_id, state))
        .await
        .unwrap_or_else(|e| panic!("save of {task_id}: {e}"));
}

pub(super) async fn load(store: &dyn SagaStateStore, task_id: TaskId) -> Option<StoredState> {
    within("load", store.load(task_id))
        .await
        .unwrap_or_else(|e| panic!("load of {task_id}: {e}"))
}

pub(super) async fn delete(store: &dyn SagaStateStore, task_id: TaskId) {
    within("delete", store.delete(task_id))
        .await
        .unwrap_or_else(|e| panic!("delete of {task_id}: {e}"));
}

/// Asserts that `stored` is `expected`: same fence, same encoded payload.
pub(super) fn assert_same(stored: Option<StoredState>, expected: &StoredState, what: &str) {
    let stored = stored.unwrap_or_else(|| panic!("{what}: nothing stored"));
    assert_eq!(stored.fence, expected.fence, "{what}: fence");
    let got = payload_bytes(&stored.payload, what);
    let want = payload_bytes(&expected.payload, what);
    assert_eq!(got, want, "{what}: payload");
}

fn payload_bytes<'a>(payload: &'a Payload, what: &str) -> (Format, &'a bytes::Bytes) {
    payload
        .encoded()
        .unwrap_or_else(|e| panic!("{what}: the payload is not encoded: {e}"))
}

/// A saved snapshot loads back as it was.
pub async fn save_and_load(store: &dyn SagaStateStore) {
    let task_id = TaskId::new();
    let saved = state(0, "first");
    save(store, task_id, saved.clone()).await;
    assert_same(load(store, task_id).await, &saved, "load after save");
    delete(store, task_id).await;
}

/// A snapshot in each [`Format`] loads back in that format, bytes intact
/// (binary formats included).
pub async fn every_format_is_kept(store: &dyn SagaStateStore) {
    let body = serde_json::json!({ "step": "any", "raw": [0, 255, 128] });
    for format in Format::ALL {
        let task_id = TaskId::new();
        let payload = Codec::new(format).encode(&body).expect("encoding a test payload");
        let saved = StoredState { fence: 0, payload };
        save(store, task_id, saved.clone()).await;
        assert_same(
            load(store, task_id).await,
            &saved,
            &format!("load of a {format} snapshot"),
        );
        delete(store, task_id).await;
    }
}

/// A second save replaces the snapshot.
pub async fn save_replaces(store: &dyn SagaStateStore) {
    let task_id = TaskId::new();
    save(store, task_id, state(1, "first")).await;
    let second = state(1, "second");
    save(store, task_id, second.clone()).await;
    assert_same(load(store, task_id).await, &second, "load after replace");
    delete(store, task_id).await;
}

/// An unknown task has no snapshot.
pub async fn missing_is_none(store: &dyn SagaStateStore) {
    let loaded = load(store, TaskId::new()).await;
    assert!(loaded.is_none(), "an unknown task must load as None: {loaded:?}");
}

/// Deleting forgets the snapshot; deleting again, or an unknown task,
/// succeeds.
pub async fn delete_is_idempotent(store: &dyn SagaStateStore) {
    let task_id = TaskId::new();
    delete(store, TaskId::new()).await;
    save(store, task_id, state(0, "doomed")).await;
    delete(store, task_id).await;
    let loaded = load(store, task_id).await;
    assert!(loaded.is_none(), "a deleted snapshot still loads: {loaded:?}");
    delete(store, task_id).await;
}

/// A save with a smaller fencing token than the stored one is
/// [`Error::Fenced`] and changes nothing; an equal or larger one is
/// accepted.
pub async fn fencing(store: &dyn SagaStateStore) {
    let task_id = TaskId::new();
    let current = state(5, "holder five");
    save(store, task_id, current.clone()).await;

    let fenced = store.save(task_id, state(3, "stale holder")).await;
    assert!(
        matches!(
            fenced,
            Err(Error::Fenced {
                presented: 3,
                current: 5
            })
        ),
        "a save with token 3 after token 5 must be Fenced {{ presented: 3, current: 5 }}, got {fenced:?}"
    );
    assert_same(load(store, task_id).await, &current, "load after a fenced save");

    let same = state(5, "holder five again");
    save(store, task_id, same.clone()).await;
    assert_same(load(store, task_id).await, &same, "load after an equal-token save");
    let newer = state(7, "holder seven");
    save(store, task_id, newer.clone()).await;
    assert_same(load(store, task_id).await, &newer, "load after a larger-token save");
    delete(store, task_id).await;
}
