//! The two saga states of CreateZipFromFiles that the serializer benchmark
//! encodes, built the way the kernel builds them: a [`TaskProgress`] from
//! the task's definition, folded from the events a run records
//! ([`TaskProgress::apply`]), and each step's data as the step returns it.
//!
//! The values are fixed (task id, times, file names and sizes), so their
//! encoded sizes are the same on every run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dtask::event::{EventKind, StepRef, TaskEvent};
use dtask::files::{LocalFile, StoredObject, StoredObjects, UniqueNames, safe_file_name};
use dtask::task::StepKind;
use dtask::{SCHEMA_VERSION, SagaSnapshot, StepHost, Task, TaskDefinition, TaskId, TaskProgress};
use dtask_demo::create_zip::{archive_name, create_zip_from_files};
use dtask_demo::zip_archive::human_bytes;
use dtask_demo::{CreateZipFromFiles, CreateZipRequest, CreateZipResponse, ZipArchive};
use time::OffsetDateTime;
use time::macros::datetime;

/// The saga state of one CreateZipFromFiles task.
pub type ZipState = SagaSnapshot<CreateZipFromFiles>;

/// The files a client uploads (as it names them, with their media types
/// and sizes): 8 files, 1 GiB in all, as in the large-files section.
pub const UPLOADED_FILES: [(&str, &str, u64); 8] = [
    ("Quarterly report Q3 2026.pdf", "application/pdf", 4_718_592),
    ("site-survey/IMG_20261127_093112.jpg", "image/jpeg", 6_291_456),
    ("site-survey/IMG_20261127_093547.jpg", "image/jpeg", 5_767_168),
    (
        "measurements-2026-11.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        1_048_576,
    ),
    ("access.log", "text/plain", 402_653_184),
    ("access.log", "text/plain", 385_875_968),
    ("inspection walkthrough.mp4", "video/mp4", 262_144_000),
    ("notes.txt", "text/plain", 2_048),
];

/// The archive name the client asks for.
pub const OUTPUT_FILE_NAME: &str = "site-inspection-2026-11.zip";

/// The size of the archive the fixed inputs give (log-like text deflates
/// to about a quarter; the rest barely shrinks).
const ARCHIVE_SIZE: u64 = 306_184_211;

/// The task's id: a UUIDv7, as [`TaskId::new`] makes them.
const TASK_ID: &str = "019ac73e-4f21-7b0c-9a3d-2e6f81c4d5a7";
/// The trace id the submit gives it (W3C: 32 lowercase hex digits).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// When the task was submitted (with nanoseconds, as a clock gives them).
const SUBMITTED_AT: OffsetDateTime = datetime!(2026-11-27 09:41:07.318_254_117 UTC);

/// The worker message: the saga state the API side saves and publishes at
/// hand-off. The request's files are consumed (they are not serialized);
/// UploadSourceFiles has completed with the 8 stored objects; the progress
/// is what the API steps and the hand-off recorded (status `Queued`).
pub fn hand_off_message() -> ZipState {
    let mut run = Run::new();
    run.api_phase();
    run.snapshot(None)
}

/// The saga state saved when the task has completed: every step's data
/// (the stored sources, the archive on the worker's disk, the stored
/// archive), the response, and the progress after `Completed`.
pub fn completed_state() -> ZipState {
    let mut run = Run::new();
    run.api_phase();
    run.worker_phase();
    let response = run.response();
    run.snapshot(Some(response))
}

/// A task run being recorded: the clock, the progress and the steps' data.
struct Run {
    definition: &'static TaskDefinition,
    task_id: TaskId,
    now: OffsetDateTime,
    progress: TaskProgress,
    data: create_zip_from_files::Data,
}

impl Run {
    fn new() -> Self {
        let definition = <CreateZipFromFiles as Task>::definition();
        let task_id: TaskId = TASK_ID.parse().unwrap_or_default();
        Self {
            definition,
            task_id,
            now: SUBMITTED_AT,
            progress: TaskProgress {
                trace_id: Some(TRACE_ID.to_owned()),
                ..TaskProgress::new(task_id, definition, SUBMITTED_AT)
            },
            data: create_zip_from_files::Data::default(),
        }
    }

    /// Records `kind`, `after` the previous event.
    fn record(&mut self, after: Duration, kind: EventKind) {
        self.now += after;
        self.progress.apply(&TaskEvent {
            task_id: self.task_id,
            at: self.now,
            kind,
        });
    }

    fn step(&self, name: &str) -> StepRef {
        let index = self.definition.step_index(name).unwrap_or_default();
        StepRef {
            index,
            name: self.definition.steps[index].name,
        }
    }

    fn bucket(&self, step: StepRef) -> String {
        match self.definition.steps[step.index].kind {
            StepKind::FileUpload { bucket } => bucket.to_owned(),
            _ => String::new(),
        }
    }

    /// The key the upload step gives the `index`-th file
    /// (`dtask::__private`'s `upload_key`, which needs a step context).
    fn key(&self, step: StepRef, index: usize, name: &str) -> String {
        format!("{}/{}/{index:04}-{}", self.task_id, step.name, name.replace('/', "_"))
    }

    /// Submit, the Api step UploadSourceFiles, hand-off.
    fn api_phase(&mut self) {
        let upload = self.step("UploadSourceFiles");
        self.record(Duration::ZERO, EventKind::Submitted);
        self.record(ms(1), EventKind::Started { host: StepHost::Api });
        self.record(
            ms(1),
            EventKind::StepStarted {
                step: upload,
                attempt: 1,
                worker: "worker-1:4242".to_owned(),
            },
        );
        let mut names = UniqueNames::default();
        let mut stored = StoredObjects {
            bucket: self.bucket(upload),
            objects: Vec::new(),
        };
        for (client_name, content_type, size) in UPLOADED_FILES {
            let name = names.claim(&safe_file_name(client_name));
            stored.objects.push(StoredObject {
                key: self.key(upload, stored.objects.len(), &name),
                name,
                size,
                content_type: Some(content_type.to_owned()),
            });
        }
        let total = stored.total_size();
        self.record(
            ms(10_600),
            EventKind::StepProgress {
                step: upload,
                fraction: 1.0,
                message: Some(format!("{} files, {total} bytes stored", stored.objects.len())),
            },
        );
        self.record(
            ms(2),
            EventKind::StepCompleted {
                step: upload,
                attempt: 1,
            },
        );
        self.data.upload_source_files = Some(stored);
        self.record(
            ms(1),
            EventKind::HandedOff {
                queue: self.definition.queue,
            },
        );
    }

    /// The Worker steps CreateZipArchive and UploadZip, then `Completed`.
    fn worker_phase(&mut self) {
        let (zip, upload) = (self.step("CreateZipArchive"), self.step("UploadZip"));
        let sources = self.data.upload_source_files.clone().unwrap_or_default();
        self.record(ms(4), EventKind::Started { host: StepHost::Worker });
        self.record(
            ms(1),
            EventKind::StepStarted {
                step: zip,
                attempt: 1,
                worker: "worker-1:4242".to_owned(),
            },
        );
        let total = human_bytes(sources.total_size());
        self.record(
            ms(24_900),
            EventKind::StepProgress {
                step: zip,
                fraction: 1.0,
                message: Some(format!("{total} of {total} zipped")),
            },
        );
        let name = archive_name(Some(OUTPUT_FILE_NAME));
        let archive = LocalFile {
            path: PathBuf::from(format!("/tmp/dtask/48213/{}/{name}", self.task_id)),
            name: name.clone(),
            content_type: Some("application/zip".to_owned()),
        };
        self.record(ms(3), EventKind::StepCompleted { step: zip, attempt: 1 });
        self.data.create_zip_archive = Some(ZipArchive {
            archive,
            entries: sources.objects.len() as u32,
            input_bytes: sources.total_size(),
        });
        self.record(
            ms(1),
            EventKind::StepStarted {
                step: upload,
                attempt: 1,
                worker: "worker-1:4242".to_owned(),
            },
        );
        self.record(
            ms(1_700),
            EventKind::StepProgress {
                step: upload,
                fraction: 1.0,
                message: Some(format!("1 files, {ARCHIVE_SIZE} bytes stored")),
            },
        );
        self.record(
            ms(2),
            EventKind::StepCompleted {
                step: upload,
                attempt: 1,
            },
        );
        self.data.upload_zip = Some(StoredObjects {
            bucket: self.bucket(upload),
            objects: vec![StoredObject {
                key: self.key(upload, 0, &name),
                name,
                size: ARCHIVE_SIZE,
                content_type: Some("application/zip".to_owned()),
            }],
        });
        self.record(ms(1), EventKind::Completed);
    }

    /// The response, as the task's `response` builds it from the data.
    fn response(&self) -> CreateZipResponse {
        let stored = self.data.upload_zip.clone().unwrap_or_default();
        let object = stored.objects.first().cloned();
        CreateZipResponse {
            bucket: stored.bucket,
            key: object.as_ref().map(|o| o.key.clone()).unwrap_or_default(),
            file_name: object.as_ref().map(|o| o.name.clone()).unwrap_or_default(),
            size: object.map_or(0, |o| o.size),
            entries: self.data.create_zip_archive.as_ref().map_or(0, |a| a.entries),
        }
    }

    fn snapshot(self, response: Option<CreateZipResponse>) -> ZipState {
        SagaSnapshot {
            schema_version: SCHEMA_VERSION,
            request: Arc::new(CreateZipRequest {
                output_file_name: Some(OUTPUT_FILE_NAME.to_owned()),
                ..CreateZipRequest::default()
            }),
            data: self.data,
            progress: self.progress,
            response,
            deadline: SUBMITTED_AT + self.definition.timeout,
        }
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}
