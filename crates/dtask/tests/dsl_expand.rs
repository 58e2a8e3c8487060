//! What `#[dtask::task]` generates, checked at run time without the
//! kernel: the static definition (sorted steps, hosts, groups, retry
//! policies, conditions, compensable flags), condition evaluation with the
//! values it observed, the response builder, and the step data's JSON form.

use std::time::Duration;

use dtask::prelude::*;
use dtask::{Backoff, Jitter, Mode, OnExhausted, RetryPolicy, SagaStateSerializer, StepHost};
use dtask::{JsonSerializer, StepErrorKind};
use serde::{Deserialize, Serialize};

// --- The ZIP task of the design ------------------------------------------

/// Files to put into one archive.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateZipRequest {
    /// The uploaded files.
    #[serde(skip)]
    pub files: Files,
    /// The archive's name.
    pub output_file_name: Option<String>,
}

/// Where the archive went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateZipResponse {
    /// Its bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// Its number of entries.
    pub entries: u32,
}

/// The archive on local disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZipArchive {
    /// The file.
    pub archive: LocalFile,
    /// Its number of entries.
    pub entries: u32,
}

/// Zips uploaded files.
#[dtask::task(
    name = "CreateZipFromFiles",
    request = CreateZipRequest,
    response = CreateZipResponse,
    queue = "file-processing",
    max_retries = 2,
    timeout_secs = 600,
    mode = InProcess,
    serialization = Json,
    cancellable,
)]
#[file_upload(UploadZip, order = 3, bucket = "processed-files", source = create_zip_archive.archive)]
#[file_upload(UploadSourceFiles, order = 1, bucket = "incoming-files", source = request.files)]
#[placement(UploadSourceFiles, host = Api)]
#[custom_step(CreateZipArchive, order = 2, inputs(upload_source_files), output = ZipArchive, timeout_secs = 300)]
#[retry(CreateZipArchive, max_retries = 3, backoff = Exponential, base_delay_ms = 500)]
#[compensation(CreateZipArchive)]
pub struct CreateZipFromFiles;

impl create_zip_from_files::Steps for CreateZipFromFiles {
    async fn create_zip_archive(
        &self,
        _cx: &StepContext,
        input: create_zip_from_files::CreateZipArchiveInput<'_>,
    ) -> Result<ZipArchive, StepError> {
        let name = input
            .request
            .output_file_name
            .clone()
            .unwrap_or_else(|| "archive.zip".into());
        Ok(ZipArchive {
            archive: LocalFile {
                path: name.clone().into(),
                name,
                content_type: None,
            },
            entries: input.upload_source_files.objects.len() as u32,
        })
    }

    async fn compensate_create_zip_archive(
        &self,
        _cx: &StepContext,
        _request: &CreateZipRequest,
        data: &ZipArchive,
    ) -> Result<(), StepError> {
        let _ = std::fs::remove_file(&data.archive.path);
        Ok(())
    }

    fn response(&self, outputs: create_zip_from_files::Outputs<'_>) -> Result<CreateZipResponse, StepError> {
        let object = outputs
            .upload_zip
            .objects
            .first()
            .ok_or_else(|| StepError::permanent("no archive stored"))?;
        Ok(CreateZipResponse {
            bucket: outputs.upload_zip.bucket.clone(),
            key: object.key.clone(),
            entries: outputs.create_zip_archive.entries,
        })
    }
}

// --- A video task: a parallel group and a condition ------------------------

/// A video to transcode.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TranscodeRequest {
    /// The uploaded video.
    #[serde(skip)]
    pub video: Files,
    /// Whether a 4K rendition is wanted at all.
    pub allow_4k: bool,
}

/// The renditions made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TranscodeResponse {
    /// Their names.
    pub renditions: Vec<String>,
}

/// What ffprobe says.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VideoMetadata {
    /// Height in pixels.
    pub height: u32,
}

/// One transcoded file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rendition {
    /// Its name.
    pub name: String,
}

/// Transcodes a video into several renditions at once.
#[dtask::task(name = "VideoTranscode", request = TranscodeRequest, response = TranscodeResponse, queue = "video")]
#[file_upload(UploadVideo, order = 1, bucket = "raw-videos", source = request.video)]
#[placement(UploadVideo, host = Api)]
#[custom_step(ExtractMetadata, order = 2, inputs(upload_video), output = VideoMetadata)]
#[parallel_group(TranscodeAll, order = 3, await_all = true)]
#[custom_step(Transcode4K, order = 3, group = TranscodeAll, inputs(extract_metadata), output = Rendition)]
#[custom_step(Transcode720p, order = 3, group = TranscodeAll, output = Rendition)]
#[condition(Transcode4K, request.allow_4k && extract_metadata.height > 1080)]
#[retry(Transcode720p, max_retries = 5, backoff = Linear, base_delay_ms = 2000, max_delay_ms = None, jitter = Full, on_exhausted = Fail)]
#[custom_step(Publish, order = 4, inputs(transcode720p, transcode4_k))]
pub struct VideoTranscode;

impl video_transcode::Steps for VideoTranscode {
    async fn extract_metadata(
        &self,
        _cx: &StepContext,
        _input: video_transcode::ExtractMetadataInput<'_>,
    ) -> Result<VideoMetadata, StepError> {
        Ok(VideoMetadata { height: 2160 })
    }

    async fn transcode4_k(
        &self,
        _cx: &StepContext,
        input: video_transcode::Transcode4KInput<'_>,
    ) -> Result<Rendition, StepError> {
        Ok(Rendition {
            name: format!("{}p", input.extract_metadata.height),
        })
    }

    async fn transcode720p(
        &self,
        _cx: &StepContext,
        _input: video_transcode::Transcode720pInput<'_>,
    ) -> Result<Rendition, StepError> {
        Ok(Rendition { name: "720p".into() })
    }

    async fn publish(&self, _cx: &StepContext, input: video_transcode::PublishInput<'_>) -> Result<(), StepError> {
        // The 4K rendition is optional: its step has a condition.
        let _: Option<&Rendition> = input.transcode4_k;
        let _: &Rendition = input.transcode720p;
        Ok(())
    }

    fn response(&self, outputs: video_transcode::Outputs<'_>) -> Result<TranscodeResponse, StepError> {
        let renditions = [Some(outputs.transcode720p), outputs.transcode4_k]
            .into_iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect();
        Ok(TranscodeResponse { renditions })
    }
}

// --- Tests -----------------------------------------------------------------

#[test]
fn task_settings_and_defaults() {
    let zip = CreateZipFromFiles::definition();
    assert_eq!(zip.name, "CreateZipFromFiles");
    assert_eq!(zip.queue, "file-processing");
    assert_eq!(zip.max_retries, 2);
    assert_eq!(zip.timeout, Duration::from_secs(600));
    assert_eq!(zip.mode, Mode::InProcess);
    assert_eq!(zip.format, dtask::Format::Json);
    assert!(zip.cancellable);

    let video = VideoTranscode::definition();
    assert_eq!(video.queue, "video");
    assert_eq!(video.max_retries, 3);
    assert_eq!(video.timeout, Duration::from_secs(300));
    assert_eq!(video.mode, Mode::Distributed);
    assert!(!video.cancellable);
}

#[test]
fn steps_are_sorted_by_order_with_their_kinds_and_hosts() {
    let zip = CreateZipFromFiles::definition();
    let names: Vec<_> = zip.steps.iter().map(|s| (s.name, s.order, s.host)).collect();
    assert_eq!(
        names,
        [
            ("UploadSourceFiles", 1, StepHost::Api),
            ("CreateZipArchive", 2, StepHost::Worker),
            ("UploadZip", 3, StepHost::Worker),
        ]
    );
    assert_eq!(
        zip.steps[0].kind,
        dtask::task::StepKind::FileUpload {
            bucket: "incoming-files"
        }
    );
    assert_eq!(zip.steps[1].kind, dtask::task::StepKind::Custom);
    assert_eq!(zip.steps[1].timeout, Some(Duration::from_secs(300)));
    assert_eq!(zip.steps[0].timeout, None);
    assert!(zip.groups.is_empty());
    assert!(zip.steps.iter().all(|s| s.condition.is_none() && s.group.is_none()));
}

#[test]
fn builtin_and_compensated_steps_are_compensable() {
    let zip = CreateZipFromFiles::definition();
    assert!(zip.steps.iter().all(|s| s.compensable));
    let video = VideoTranscode::definition();
    let compensable: Vec<_> = video.steps.iter().map(|s| (s.name, s.compensable)).collect();
    assert_eq!(
        compensable,
        [
            ("UploadVideo", true),
            ("ExtractMetadata", false),
            ("Transcode4K", false),
            ("Transcode720p", false),
            ("Publish", false),
        ]
    );
}

#[test]
fn retry_policies_override_the_task_default() {
    let zip = CreateZipFromFiles::definition();
    assert_eq!(zip.steps[0].retry, RetryPolicy::task_default(2));
    assert_eq!(
        zip.steps[1].retry,
        RetryPolicy {
            max_retries: 3,
            backoff: Backoff::Exponential,
            base_delay: Duration::from_millis(500),
            ..RetryPolicy::task_default(2)
        }
    );
    let video = VideoTranscode::definition();
    let transcode = &video.steps[video.step_index("Transcode720p").unwrap()];
    assert_eq!(
        transcode.retry,
        RetryPolicy {
            max_retries: 5,
            backoff: Backoff::Linear,
            base_delay: Duration::from_millis(2000),
            max_delay: None,
            jitter: Jitter::Full,
            on_exhausted: OnExhausted::Fail,
        }
    );
}

#[test]
fn group_members_share_a_stage_in_declaration_order() {
    let video = VideoTranscode::definition();
    assert_eq!(video.groups.len(), 1);
    assert_eq!(video.groups[0].name, "TranscodeAll");
    assert_eq!(video.groups[0].order, 3);
    assert!(video.groups[0].await_all);
    let stages: Vec<Vec<&str>> = video
        .stages()
        .iter()
        .map(|stage| stage.steps.iter().map(|&i| video.steps[i].name).collect())
        .collect();
    assert_eq!(
        stages,
        [
            vec!["UploadVideo"],
            vec!["ExtractMetadata"],
            vec!["Transcode4K", "Transcode720p"],
            vec!["Publish"],
        ]
    );
    assert_eq!(video.steps[2].group, Some(0));
    assert_eq!(video.steps[3].group, Some(0));
}

#[test]
fn condition_text_is_recorded() {
    let video = VideoTranscode::definition();
    let transcode_4k = &video.steps[2];
    assert_eq!(
        transcode_4k.condition,
        Some("request.allow_4k && extract_metadata.height > 1080")
    );
}

fn video_data(height: Option<u32>) -> <VideoTranscode as Task>::Data {
    video_transcode::Data {
        extract_metadata: height.map(|height| VideoMetadata { height }),
        ..Default::default()
    }
}

#[test]
fn condition_holds_and_records_what_it_read() {
    let request = TranscodeRequest {
        allow_4k: true,
        ..Default::default()
    };
    let snapshot = VideoTranscode::evaluate_condition(2, &request, &video_data(Some(2160))).unwrap();
    assert!(snapshot.holds);
    assert_eq!(
        snapshot.expression,
        "request.allow_4k && extract_metadata.height > 1080"
    );
    let observed: Vec<_> = snapshot
        .observed
        .iter()
        .map(|o| (o.path.as_str(), o.value.as_str()))
        .collect();
    assert_eq!(
        observed,
        [("request.allow_4k", "true"), ("extract_metadata.height", "2160")]
    );

    let snapshot = VideoTranscode::evaluate_condition(2, &request, &video_data(Some(720))).unwrap();
    assert!(!snapshot.holds);
    assert_eq!(snapshot.observed[1].value, "720");
}

#[test]
fn condition_over_skipped_data_does_not_hold() {
    let request = TranscodeRequest::default();
    let snapshot = VideoTranscode::evaluate_condition(2, &request, &video_data(None)).unwrap();
    assert!(!snapshot.holds);
    assert_eq!(snapshot.observed[0].path, "ExtractMetadata");
    assert_eq!(snapshot.observed[0].value, "<skipped>");
}

#[test]
fn steps_without_condition_have_no_snapshot() {
    let request = TranscodeRequest::default();
    for step in [0, 1, 3, 4, 99] {
        assert!(VideoTranscode::evaluate_condition(step, &request, &video_data(Some(1))).is_none());
    }
}

#[test]
fn response_reads_required_and_optional_data() {
    let request = TranscodeRequest::default();
    let mut data = video_data(Some(720));
    data.upload_video = Some(StoredObjects::default());
    data.transcode720p = Some(Rendition { name: "720p".into() });
    data.publish = Some(());
    let response = VideoTranscode.response(&request, &data).unwrap();
    assert_eq!(response.renditions, ["720p"]);

    data.transcode720p = None;
    let error = VideoTranscode.response(&request, &data).unwrap_err();
    assert_eq!(error.kind(), StepErrorKind::Permanent);
    assert!(error.message().contains("`Transcode720p`"), "{}", error.message());
}

#[test]
fn data_serializes_in_camel_case_and_skips_missing_steps() {
    let data = video_data(Some(1080));
    let json = JsonSerializer.serialize(&data).unwrap();
    assert_eq!(
        std::str::from_utf8(&json).unwrap(),
        r#"{"extractMetadata":{"height":1080}}"#
    );
    let back: <VideoTranscode as Task>::Data = JsonSerializer.deserialize(&json).unwrap();
    assert_eq!(back.extract_metadata.unwrap().height, 1080);
    assert!(back.transcode4_k.is_none());
}

#[test]
fn data_of_a_step_whose_output_saves_as_null_reads_back_present() {
    // `Publish` outputs `()`: saved as `null`, it must not read back as a
    // step that never ran (a resumed run would neither compensate it nor
    // find its output).
    fn round_trip(serializer: &impl SagaStateSerializer) {
        let mut data = video_data(None);
        data.publish = Some(());
        let bytes = serializer.serialize(&data).unwrap();
        let back: <VideoTranscode as Task>::Data = serializer.deserialize(&bytes).unwrap();
        assert_eq!(back.publish, Some(()), "{:?}", serializer.format());
        assert!(back.transcode4_k.is_none());
    }
    round_trip(&JsonSerializer);
    round_trip(&dtask::MessagePackSerializer);
    round_trip(&dtask::ProtobufSerializer::default());
}

// --- Conditions reading through macros, closures and tuple fields ----------

/// A request with numbers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CheckRequest {
    /// Some sizes.
    pub items: Vec<u32>,
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Size {
    /// Small.
    Small,
    /// Big.
    Big,
}

/// Probes, then maybe works.
#[dtask::task(name = "Checks", request = CheckRequest, response = ())]
#[custom_step(Probe, order = 1, output = (u32, Size))]
#[custom_step(Work, order = 2)]
#[condition(Work, matches!(probe.1, Size::Big) && request.items.iter().any(|item| *item > probe.0))]
pub struct Checks;

impl checks::Steps for Checks {
    async fn probe(&self, _cx: &StepContext, _input: checks::ProbeInput<'_>) -> Result<(u32, Size), StepError> {
        Ok((1, Size::Big))
    }

    async fn work(&self, _cx: &StepContext, _input: checks::WorkInput<'_>) -> Result<(), StepError> {
        Ok(())
    }

    fn response(&self, _outputs: checks::Outputs<'_>) -> Result<(), StepError> {
        Ok(())
    }
}

#[test]
fn conditions_read_through_macros_closures_and_tuple_fields() {
    let request = CheckRequest { items: vec![1, 5] };
    let data = checks::Data {
        probe: Some((3, Size::Big)),
        work: None,
    };
    let snapshot = Checks::evaluate_condition(1, &request, &data).unwrap();
    assert!(snapshot.holds);
    assert_eq!(
        snapshot.expression,
        "matches!(probe.1, Size::Big) && request.items.iter().any(|item| *item > probe.0)"
    );
    let observed: Vec<_> = snapshot
        .observed
        .iter()
        .map(|o| (o.path.as_str(), o.value.as_str()))
        .collect();
    assert_eq!(
        observed,
        [("probe.1", "Big"), ("request.items", "[1, 5]"), ("probe.0", "3")]
    );

    let small = checks::Data {
        probe: Some((3, Size::Small)),
        work: None,
    };
    assert!(!Checks::evaluate_condition(1, &request, &small).unwrap().holds);
}
