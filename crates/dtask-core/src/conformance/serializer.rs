//! Checks for [`SagaStateSerializer`] implementations.
//!
//! Serializers are synchronous, so these checks are plain functions.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::codec::{Format, SagaStateSerializer};
use crate::error::{Error, Result};
use crate::event::{EventKind, TaskEvent};
use crate::id::TaskId;
use crate::progress::TaskProgress;
use crate::task::{Mode, StepHost, TaskDefinition};

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

static DEFINITION: TaskDefinition = TaskDefinition {
    name: "ConformanceTask",
    queue: "dtask-conformance",
    max_retries: 0,
    timeout: Duration::from_secs(60),
    mode: Mode::InProcess,
    format: Format::Json,
    cancellable: true,
    steps: &[],
    groups: &[],
};

/// Runs every check of this module against `serializer`.
pub fn run_all(serializer: &impl SagaStateSerializer) {
    round_trips_a_saga_state(serializer);
    round_trips_a_progress_snapshot(serializer);
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

/// A nested state with an absent optional field, enums, vectors, maps,
/// non-ASCII text and extreme integers comes back equal.
pub fn round_trips_a_saga_state(serializer: &impl SagaStateSerializer) {
    let value = sample();
    assert_eq!(
        round_trip(serializer, &value, "saga state"),
        value,
        "saga state round trip"
    );
    if serializer.format() == Format::Json {
        let bytes = serializer.serialize(&value).expect("serialize");
        let text = std::str::from_utf8(&bytes).expect("JSON is UTF-8");
        assert!(!text.contains("absent"), "an absent optional field was written: {text}");
        assert!(text.contains("\"largest\":18446744073709551615"), "u64::MAX: {text}");
    }
}

/// A progress snapshot, as trackers store it, comes back equal.
pub fn round_trips_a_progress_snapshot(serializer: &impl SagaStateSerializer) {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    let mut progress = TaskProgress::new(TaskId::new(), &DEFINITION, now);
    let kinds = [
        EventKind::Started { host: StepHost::Worker },
        EventKind::CancellationRequested,
        EventKind::Cancelled,
    ];
    for kind in kinds {
        progress.apply(&TaskEvent {
            task_id: progress.task_id,
            at: now,
            kind,
        });
    }
    let back = round_trip(serializer, &progress, "progress snapshot");
    assert_eq!(back, progress, "progress snapshot round trip");
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
}
