//! The saga states the serializer benchmark builds have the shape of those
//! the kernel saves when it runs CreateZipFromFiles: the same fields
//! present at hand-off and after completion, the same step states.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dtask::infra::{SagaStateStore, StoredState};
use dtask::memory::MemoryStateStore;
use dtask::prelude::*;
use dtask::testing::TestHost;
use dtask::{SagaSnapshot, StepStatus};
use dtask_bench::wire::{OUTPUT_FILE_NAME, UPLOADED_FILES, ZipState, completed_state, hand_off_message};
use dtask_demo::{CreateZipFromFiles, CreateZipRequest};
use serde_json::Value;

/// The in-memory state store, keeping every saved snapshot.
#[derive(Debug, Default, Clone)]
struct RecordingStore {
    inner: Arc<MemoryStateStore>,
    saved: Arc<Mutex<Vec<StoredState>>>,
}

#[async_trait]
impl SagaStateStore for RecordingStore {
    async fn save(&self, task_id: TaskId, state: StoredState) -> dtask::Result<()> {
        self.saved.lock().unwrap().push(state.clone());
        self.inner.save(task_id, state).await
    }

    async fn load(&self, task_id: TaskId) -> dtask::Result<Option<StoredState>> {
        self.inner.load(task_id).await
    }

    async fn delete(&self, task_id: TaskId) -> dtask::Result<()> {
        self.inner.delete(task_id).await
    }
}

/// Every path of `state`'s JSON form that holds a value, array indices
/// left out (`.data.uploadSourceFiles.objects[].key`), except a step's
/// progress message: the kernel publishes a step's reports at most every
/// 100 ms, so the tiny files here leave none, while the built values (a
/// 1 GiB upload, a 26 s zip) carry the last one.
fn paths(state: &ZipState) -> BTreeSet<String> {
    fn walk(value: &Value, at: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    walk(member, &format!("{at}.{key}"), out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{at}[]"), out);
                }
            }
            _ => {
                out.insert(at.to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&serde_json::to_value(state).unwrap(), "", &mut out);
    out.remove(".progress.steps[].message");
    out
}

fn step_statuses(state: &ZipState) -> Vec<StepStatus> {
    state.progress.steps.iter().map(|s| s.status).collect()
}

#[tokio::test]
async fn the_built_states_have_the_shape_of_a_real_run() {
    let store = RecordingStore::default();
    let host = TestHost::with(|b| b.register(CreateZipFromFiles).state_store(store.clone()));
    let files = UPLOADED_FILES
        .iter()
        .enumerate()
        .map(|(i, (name, content_type, _))| IncomingFile {
            content_type: Some((*content_type).to_owned()),
            ..IncomingFile::from_bytes(*name, format!("file {i}").into_bytes())
        })
        .collect();
    let request = CreateZipRequest {
        files: Files::from_files(files),
        output_file_name: Some(OUTPUT_FILE_NAME.to_owned()),
    };
    let outcome = host.run::<CreateZipFromFiles>(request).await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);

    let saved: Vec<ZipState> = store
        .saved
        .lock()
        .unwrap()
        .iter()
        .map(|state| state.payload.decode::<SagaSnapshot<CreateZipFromFiles>>().unwrap())
        .collect();
    let real_hand_off = saved
        .iter()
        .find(|state| state.progress.status == TaskStatus::Queued)
        .expect("the hand-off is saved");
    let real_end = saved.last().unwrap();
    let (built_hand_off, built_end) = (hand_off_message(), completed_state());

    assert_eq!(step_statuses(&built_hand_off), step_statuses(real_hand_off));
    assert_eq!(paths(&built_hand_off), paths(real_hand_off));
    assert_eq!(built_hand_off.progress.message, real_hand_off.progress.message);

    assert_eq!(real_end.progress.status, TaskStatus::Completed);
    assert_eq!(step_statuses(&built_end), step_statuses(real_end));
    assert_eq!(paths(&built_end), paths(real_end));
    assert_eq!(
        built_end.response.as_ref().map(|r| r.entries),
        real_end.response.as_ref().map(|r| r.entries)
    );
    let names = |state: &ZipState| -> Vec<String> {
        let stored = state.data.upload_source_files.clone().unwrap_or_default();
        stored.objects.into_iter().map(|o| o.name).collect()
    };
    assert_eq!(
        names(&built_end),
        names(real_end),
        "the upload step names the files alike"
    );
}
