//! Checks for [`SagaStateSerializer`] implementations.
//!
//! Serializers are synchronous, so these checks are plain functions. They
//! round-trip the shapes that trip serializers up, as plain values, inside
//! a whole saga state, and in a progress snapshot that has been through
//! every kind of transition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::codec::SagaSnapshot;
use crate::codec::{Format, SCHEMA_VERSION, SagaStateSerializer};
use crate::error::{Error, Result};
use crate::event::{EventKind, StepRef, TaskEvent};
use crate::id::TaskId;
use crate::progress::{ConditionSnapshot, ObservedValue, TaskProgress, TaskStatus};
use crate::task::{
    DataUpdate, DependentTask, Mode, RetryPolicy, StepContext, StepDefinition, StepError, StepHost, StepKind, Task,
    TaskDefinition,
};

/// A saga state with the shapes that trip serializers up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sample {
    title: String,
    largest: u64,
    smallest: i64,
    ratio: f64,
    flag: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    absent: Option<String>,
    present: Option<Node>,
    kind: Kind,
    kinds: Vec<Kind>,
    nodes: Vec<Node>,
    counts: BTreeMap<String, u32>,
    raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    name: String,
    depth: u32,
    children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Kind {
    Plain,
    Pair(u32, String),
    Named { field: String },
}

const STEP_RETRY: RetryPolicy = RetryPolicy::task_default(2);

const fn step(name: &'static str, order: u32, host: StepHost, group: Option<usize>) -> StepDefinition {
    StepDefinition {
        name,
        order,
        kind: StepKind::Custom,
        host,
        group,
        retry: STEP_RETRY,
        timeout: None,
        condition: None,
        compensable: true,
    }
}

static DEFINITION: TaskDefinition = TaskDefinition {
    name: "ConformanceTask",
    queue: "dtask-conformance",
    max_retries: 0,
    timeout: Duration::from_secs(60),
    mode: Mode::InProcess,
    format: Format::Json,
    cancellable: true,
    required_roles: &[],
    encrypt_messages: false,
    version: 1,
    steps: &[
        step("Receive", 1, StepHost::Api, None),
        step("Transform", 2, StepHost::Worker, None),
        step("Publish", 3, StepHost::Worker, None),
    ],
    groups: &[],
    depends_on: &[],
};

/// The data of [`ConformanceTask`]: one optional field per step, as the
/// DSL generates it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SampleData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receive: Option<Sample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transform: Option<Vec<Kind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    publish: Option<String>,
}

/// A task whose request, data and response hold the awkward shapes. It
/// never runs: only its saga state is serialized.
struct ConformanceTask;

impl Task for ConformanceTask {
    type Request = Sample;
    type Response = Sample;
    type Data = SampleData;

    fn definition() -> &'static TaskDefinition {
        &DEFINITION
    }

    fn run_step<'a>(
        &'a self,
        _step: usize,
        _cx: &'a StepContext,
        _request: &'a Sample,
        _data: &'a SampleData,
    ) -> BoxFuture<'a, Result<DataUpdate<SampleData>, StepError>> {
        Box::pin(async { Err(StepError::permanent("the conformance task never runs")) })
    }

    fn adopt_output(step: usize, from: &mut SampleData, into: &mut SampleData) {
        match step {
            0 => into.receive = from.receive.take(),
            1 => into.transform = from.transform.take(),
            _ => into.publish = from.publish.take(),
        }
    }

    fn compensate_step<'a>(
        &'a self,
        _step: usize,
        _cx: &'a StepContext,
        _request: &'a Sample,
        _data: &'a SampleData,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }

    fn evaluate_condition(_step: usize, _request: &Sample, _data: &SampleData) -> Option<ConditionSnapshot> {
        None
    }

    fn response(&self, request: &Sample, _data: &SampleData) -> Result<Sample, StepError> {
        Ok(request.clone())
    }
}

/// Runs every check of this module against `serializer`.
pub fn run_all(serializer: &impl SagaStateSerializer) {
    round_trips_a_value(serializer);
    round_trips_a_saga_state(serializer);
    round_trips_a_progress_snapshot(serializer);
    round_trips_every_task_status(serializer);
    refuses_a_newer_schema(serializer);
    garbage_is_a_codec_error(serializer);
}
fn sample() -> Sample {
    let leaf = |name: &str| Node {
        name: name.to_owned(),
        depth: 2,
        children: Vec::new(),
    };
    Sample {
        title: "Grüße, 世界 ✓ \"quoted\" \\ \n".to_owned(),
        largest: u64::MAX,
        smallest: i64::MIN,
        ratio: -1.5,
        flag: true,
        absent: None,
        present: Some(Node {
            name: "root".to_owned(),
            depth: 1,
            children: vec![leaf("a"), leaf("ß")],
        }),
        kind: Kind::Named {
            field: "value".to_owned(),
        },
        kinds: vec![Kind::Plain, Kind::Pair(7, "seven".to_owned())],
        nodes: Vec::new(),
        counts: BTreeMap::from([("ünïcode".to_owned(), 1), ("plain".to_owned(), u32::MAX)]),
        raw: vec![0, 1, 254, 255],
    }
}

fn round_trip<T>(serializer: &impl SagaStateSerializer, value: &T, what: &str) -> T
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let bytes = serializer
        .serialize(value)
        .unwrap_or_else(|e| panic!("{what}: serialize: {e}"));
    serializer
        .deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{what}: deserialize: {e}"))
}

/// A nested value with an absent optional field, enums, vectors, maps,
/// non-ASCII text and extreme integers comes back equal.
pub fn round_trips_a_value(serializer: &impl SagaStateSerializer) {
    let value = sample();
    assert_eq!(round_trip(serializer, &value, "value"), value, "value round trip");
    if serializer.format() == Format::Json {
        let bytes = serializer.serialize(&value).expect("serialize");
        let text = std::str::from_utf8(&bytes).expect("JSON is UTF-8");
        assert!(!text.contains("absent"), "an absent optional field was written: {text}");
        assert!(text.contains("\"largest\":18446744073709551615"), "u64::MAX: {text}");
    }
}

/// A progress snapshot that has been through steps on both hosts, a
/// condition, retries, reported progress, cancellation and compensation.
fn eventful_progress() -> TaskProgress {
    let now = OffsetDateTime::now_utc();
    let mut progress = TaskProgress::new(TaskId::new(), &DEFINITION, now);
    let step = |index: usize| StepRef {
        index,
        name: DEFINITION.steps[index].name,
    };
    let condition = ConditionSnapshot {
        expression: "data.receive.is_some()".to_owned(),
        observed: vec![ObservedValue {
            path: "data.receive".to_owned(),
            value: "Some(..)".to_owned(),
        }],
        holds: true,
    };
    let kinds = [
        EventKind::Submitted,
        EventKind::Started { host: StepHost::Api },
        EventKind::StepStarted {
            step: step(0),
            attempt: 1,
            worker: "worker-a:4242".to_owned(),
        },
        EventKind::StepCompleted {
            step: step(0),
            attempt: 1,
        },
        EventKind::HandedOff {
            queue: DEFINITION.queue,
        },
        EventKind::Started { host: StepHost::Worker },
        EventKind::ConditionHeld {
            step: step(1),
            condition,
        },
        EventKind::StepStarted {
            step: step(1),
            attempt: 1,
            worker: "worker-a:4242".to_owned(),
        },
        EventKind::StepFailed {
            step: step(1),
            attempt: 1,
            error: "connection reset — ünïcode".to_owned(),
            retry_in: Some(Duration::from_millis(200)),
        },
        EventKind::StepStarted {
            step: step(1),
            attempt: 2,
            worker: "worker-a:4242".to_owned(),
        },
        EventKind::StepProgress {
            step: step(1),
            fraction: 0.375,
            message: Some("3 of 8 files".to_owned()),
        },
        EventKind::DependentsDecided {
            dependents: vec![
                DependentTask {
                    task_name: "Notify".to_owned(),
                    task_id: TaskId::derived(progress.task_id, "Notify"),
                    started: true,
                    condition: None,
                    compensates_upstream: true,
                },
                DependentTask {
                    task_name: "Audit".to_owned(),
                    task_id: TaskId::derived(progress.task_id, "Audit"),
                    started: false,
                    condition: Some(ConditionSnapshot {
                        expression: "response.flagged".to_owned(),
                        observed: vec![ObservedValue {
                            path: "response.flagged".to_owned(),
                            value: "false".to_owned(),
                        }],
                        holds: false,
                    }),
                    compensates_upstream: false,
                },
            ],
        },
        EventKind::CancellationRequested,
        EventKind::Cancelled,
    ];
    progress.parent_task_id = Some(TaskId::new());
    for (i, kind) in kinds.into_iter().enumerate() {
        progress.apply(&TaskEvent {
            task_id: progress.task_id,
            at: now + Duration::from_nanos(1_000_001 * i as u64),
            kind,
        });
    }
    progress
}

/// A progress snapshot, as trackers store it and as the saga state carries
/// it, comes back equal, to the nanosecond.
pub fn round_trips_a_progress_snapshot(serializer: &impl SagaStateSerializer) {
    let progress = eventful_progress();
    let bytes = serializer
        .serialize_progress(&progress)
        .unwrap_or_else(|e| panic!("progress snapshot: serialize: {e}"));
    let back = serializer
        .deserialize_progress(&bytes)
        .unwrap_or_else(|e| panic!("progress snapshot: deserialize: {e}"));
    assert_eq!(back, progress, "progress snapshot round trip");
}

fn saga_state() -> SagaSnapshot<ConformanceTask> {
    let progress = eventful_progress();
    SagaSnapshot {
        schema_version: SCHEMA_VERSION,
        request: Arc::new(sample()),
        data: SampleData {
            receive: Some(sample()),
            transform: Some(vec![Kind::Plain, Kind::Pair(0, String::new())]),
            publish: None,
        },
        response: Some(sample()),
        deadline: progress.created_at + Duration::from_secs(60),
        progress,
    }
}

fn assert_same_state(back: &SagaSnapshot<ConformanceTask>, sent: &SagaSnapshot<ConformanceTask>, what: &str) {
    assert_eq!(back.schema_version, sent.schema_version, "{what}: schema version");
    assert_eq!(back.request, sent.request, "{what}: request");
    assert_eq!(back.data, sent.data, "{what}: data");
    assert_eq!(back.progress, sent.progress, "{what}: progress");
    assert_eq!(back.response, sent.response, "{what}: response");
    assert_eq!(back.deadline, sent.deadline, "{what}: deadline");
}

/// A progress snapshot comes back with its status, whichever it is.
pub fn round_trips_every_task_status(serializer: &impl SagaStateSerializer) {
    let mut progress = eventful_progress();
    for status in TaskStatus::ALL {
        progress.status = status;
        let bytes = serializer
            .serialize_progress(&progress)
            .unwrap_or_else(|e| panic!("status {status:?}: serialize: {e}"));
        let back = serializer
            .deserialize_progress(&bytes)
            .unwrap_or_else(|e| panic!("status {status:?}: deserialize: {e}"));
        assert_eq!(back.status, status, "status {status:?} round trip");
    }
}

/// A whole saga state (request, data with a step absent, progress,
/// response, deadline) comes back equal, with and without a response.
pub fn round_trips_a_saga_state(serializer: &impl SagaStateSerializer) {
    let mut state = saga_state();
    for what in ["completed saga state", "running saga state"] {
        let bytes = serializer
            .serialize_state(&state)
            .unwrap_or_else(|e| panic!("{what}: serialize: {e}"));
        let back = serializer
            .deserialize_state::<ConformanceTask>(&bytes)
            .unwrap_or_else(|e| panic!("{what}: deserialize: {e}"));
        assert_same_state(&back, &state, what);
        state.response = None;
    }
}

/// A saga state written with a newer schema is refused with
/// [`Error::Codec`], naming the version.
pub fn refuses_a_newer_schema(serializer: &impl SagaStateSerializer) {
    let mut state = saga_state();
    state.schema_version = SCHEMA_VERSION + 1;
    let bytes = serializer.serialize_state(&state).expect("serialize");
    let result = serializer.deserialize_state::<ConformanceTask>(&bytes);
    let text = result.as_ref().map(|_| ()).map_err(ToString::to_string);
    assert_codec_error(result, serializer.format(), "newer schema");
    let text = text.unwrap_err();
    assert!(
        text.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
        "{text}"
    );
}

fn assert_codec_error<T: std::fmt::Debug>(result: Result<T>, expected: Format, what: &str) {
    match result {
        Err(Error::Codec { format, .. }) => assert_eq!(format, expected, "{what}: format"),
        other => panic!("{what}: expected Error::Codec, got {other:?}"),
    }
}

/// Bytes that are not a valid value are [`Error::Codec`] in the
/// serializer's format.
pub fn garbage_is_a_codec_error(serializer: &impl SagaStateSerializer) {
    let format = serializer.format();
    let garbage: &[u8] = b"\xff\xfe\x00 definitely not a value";
    assert_codec_error(serializer.deserialize::<Sample>(garbage), format, "garbage");
    let encoded = serializer.serialize(&sample()).expect("serialize");
    let truncated = &encoded[..encoded.len() / 2];
    assert_codec_error(serializer.deserialize::<Sample>(truncated), format, "truncated");
    let other = serializer.serialize(&vec![1u32, 2, 3]).expect("serialize");
    assert_codec_error(serializer.deserialize::<Sample>(&other), format, "another type");
    assert_codec_error(
        serializer.deserialize_state::<ConformanceTask>(garbage),
        format,
        "garbage saga state",
    );
    assert_codec_error(serializer.deserialize_progress(garbage), format, "garbage progress");
    let state = serializer.serialize_state(&saga_state()).expect("serialize");
    let truncated = &state[..state.len() / 2];
    assert_codec_error(
        serializer.deserialize_state::<ConformanceTask>(truncated),
        format,
        "truncated saga state",
    );
}
