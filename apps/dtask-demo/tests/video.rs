//! VideoTranscode end to end in InProcess mode with the real ffmpeg: the
//! renditions a source's height allows (checked with ffprobe), the skipped
//! ones with their condition snapshots, a file that is not a video, a
//! failed transcode that compensates its completed siblings only, a
//! cancellation that kills ffmpeg and leaves no object, and the webhook
//! notification (signed, and refused for an internal address).

mod media;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::HeaderMap;
use dtask::infra::ObjectStoreExt;
use dtask::prelude::*;
use dtask::{EventKind, Host, StepInterceptor, StepStatus, TaskEvent, TaskOutcome};
use dtask_demo::video::{
    Ffmpeg, Notifier, RAW_BUCKET, TRANSCODED_BUCKET, VideoTranscode, VideoTranscodeRequest, VideoTranscodeResponse,
};
use dtask_http::{WebhookConfig, WebhookSecret};
use media::{assert_rendition, ffmpeg_children, ffprobe, make_video, stream};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Every event of a host, in order, kept by a lossless listener (called
/// as each event is recorded, so all of a task's events are kept once its
/// outcome is known).
type Events = Arc<Mutex<Vec<TaskEvent>>>;

/// A VideoTranscode host in this process, serializing every hand-off as
/// a broker would, with `interceptor` when given, and its events.
fn host_with_events(task: VideoTranscode, interceptor: Option<FailAfter>) -> (Host, Events) {
    let events = Events::default();
    let kept = Arc::clone(&events);
    let mut builder = Host::builder()
        .register(task)
        .in_process()
        .serialize_in_process(true)
        .on_event(move |event| kept.lock().unwrap().push(event.clone()));
    if let Some(interceptor) = interceptor {
        builder = builder.interceptor(interceptor);
    }
    (builder.build().expect("a host"), events)
}

/// [`host_with_events`] without the events.
fn host(task: VideoTranscode, interceptor: Option<FailAfter>) -> Host {
    host_with_events(task, interceptor).0
}

fn task() -> VideoTranscode {
    VideoTranscode::new(Ffmpeg::default(), Notifier::new(&WebhookConfig::default()).unwrap())
}

fn request(path: &Path, notify_url: Option<String>) -> VideoTranscodeRequest {
    VideoTranscodeRequest {
        video_file: Files::from_paths([path.to_path_buf()]).unwrap(),
        notify_url,
    }
}

async fn run(host: &Host, request: VideoTranscodeRequest) -> TaskOutcome<VideoTranscodeResponse> {
    host.submit::<VideoTranscode>(request)
        .await
        .expect("submitted")
        .wait()
        .await
        .expect("an outcome")
}

/// Copies an object out of the host's store into `dir`.
async fn fetch(host: &Host, dir: &Path, bucket: &str, key: &str) -> std::path::PathBuf {
    let bytes = host.infrastructure().storage.get_bytes(bucket, key).await.unwrap();
    let path = dir.join(key.rsplit('/').next().unwrap());
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn objects_of(host: &Host, task_id: TaskId) -> usize {
    let storage = &host.infrastructure().storage;
    let mut count = 0;
    for bucket in [RAW_BUCKET, TRANSCODED_BUCKET] {
        count += storage.list(bucket, &task_id.to_string()).await.unwrap().len();
    }
    count
}

fn step<'a>(outcome: &'a TaskOutcome<VideoTranscodeResponse>, name: &str) -> &'a dtask::StepState {
    outcome.progress.steps.iter().find(|s| s.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1080p_source_gives_720p_and_1080p_renditions_and_skips_4k() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_video(dir.path(), "clip.mp4", 1920, 1080, 2, 10);
    let (host, events) = host_with_events(task(), None);
    let outcome = run(&host, request(&source, None)).await;
    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    let task_id = outcome.progress.task_id;
    let response = outcome.response.clone().unwrap();

    assert_eq!((response.source.width, response.source.height), (1920, 1080));
    assert!((response.source.duration_secs - 2.0).abs() < 0.1);
    assert_eq!(response.source.codec, "h264");
    assert_eq!(response.source.frame_rate, 10.0);
    assert!(response.source.has_audio);

    let names: Vec<&str> = response.renditions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["720p", "1080p"]);
    for (rendition, (width, height)) in response.renditions.iter().zip([(1280, 720), (1920, 1080)]) {
        assert!(rendition.key.starts_with(&task_id.to_string()), "{}", rendition.key);
        assert_eq!(rendition.bucket, TRANSCODED_BUCKET);
        let path = fetch(&host, dir.path(), &rendition.bucket, &rendition.key).await;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), rendition.size);
        assert_rendition(&path, width, height, 2.0);
        assert_eq!((rendition.width, rendition.height), (width as u32, height as u32));
    }

    // 4K skipped, with the height its condition saw.
    let skipped = step(&outcome, "Transcode4K");
    assert_eq!(skipped.status, StepStatus::Skipped);
    let condition = skipped.condition.as_ref().unwrap();
    assert!(!condition.holds);
    let height = condition
        .observed
        .iter()
        .find(|v| v.path == "extract_metadata.height")
        .unwrap();
    assert_eq!(height.value, "1080");

    // The thumbnail: a JPEG at 10 % of the duration, 360 lines tall.
    let thumbnail = &response.thumbnail;
    assert!(thumbnail.key.starts_with(&task_id.to_string()));
    assert!((thumbnail.at_secs - 0.2).abs() < 0.01);
    let path = fetch(&host, dir.path(), &thumbnail.bucket, &thumbnail.key).await;
    let report = ffprobe(&path);
    let image = stream(&report, "video").unwrap();
    assert_eq!(image["codec_name"], "mjpeg");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(640), Some(360))
    );

    // Each transcode reported its fraction from ffmpeg's -progress output.
    let events = events.lock().unwrap().clone();
    for name in ["Transcode720p", "Transcode1080p"] {
        let fractions: Vec<f64> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StepProgress {
                    step,
                    fraction,
                    message,
                    ..
                } if step.name == name => {
                    assert!(message.as_deref().unwrap_or("").contains("encoded"), "{message:?}");
                    Some(*fraction)
                }
                _ => None,
            })
            .collect();
        assert!(
            fractions.iter().any(|f| *f > 0.0),
            "{name} reported no progress: {fractions:?}"
        );
        assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{name}: {fractions:?}");
    }
    assert!(ffmpeg_children(task_id).is_empty());
    // Every step names the process that ran it.
    let node = host.node_name().to_owned();
    assert!(
        outcome
            .progress
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Completed)
            .all(|s| s.worker.as_deref() == Some(node.as_str()))
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2160p_source_gives_all_three_renditions() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_video(dir.path(), "uhd.mp4", 3840, 2160, 1, 5);
    let host = host(task(), None);
    let outcome = run(&host, request(&source, None)).await;
    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    let condition = step(&outcome, "Transcode4K").condition.clone().unwrap();
    assert!(condition.holds);
    assert_eq!(condition.observed[0].value, "2160");
    let response = outcome.response.unwrap();
    let expected = [(1280, 720), (1920, 1080), (3840, 2160)];
    assert_eq!(response.renditions.len(), 3);
    for (rendition, (width, height)) in response.renditions.iter().zip(expected) {
        let path = fetch(&host, dir.path(), &rendition.bucket, &rendition.key).await;
        assert_rendition(&path, width, height, 1.0);
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_video_fails_at_once_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "these are not moving pictures\n".repeat(100)).unwrap();
    let host = host(task(), None);
    let outcome = run(&host, request(&text, None)).await;
    assert_eq!(outcome.status(), TaskStatus::Compensated);
    let extract = step(&outcome, "ExtractMetadata");
    assert_eq!(extract.status, StepStatus::Failed);
    assert_eq!(extract.attempts, 1, "a permanent failure is not retried");
    let error = extract.error.as_deref().unwrap();
    assert!(error.contains("`notes.mp4` is not a video ffprobe can read"), "{error}");
    assert_eq!(
        objects_of(&host, outcome.progress.task_id).await,
        0,
        "the upload is deleted"
    );
    host.shutdown().await;
}

/// Fails `step` for good once `after` has completed (told by the host's
/// events), so the failure meets a completed sibling.
#[derive(Clone)]
struct FailAfter {
    step: &'static str,
    completed: Arc<Notify>,
}

#[async_trait]
impl StepInterceptor for FailAfter {
    async fn before_attempt(
        &self,
        _task: &'static str,
        step: &'static str,
        _attempt: u32,
        token: &CancellationToken,
    ) -> Result<(), StepError> {
        if step != self.step {
            return Ok(());
        }
        tokio::select! {
            () = self.completed.notified() => Err(StepError::permanent("injected failure after a sibling completed")),
            () = token.cancelled() => Err(StepError::cancelled()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transcode_compensates_its_completed_siblings_only() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_video(dir.path(), "clip.mp4", 1920, 1080, 2, 10);
    let completed = Arc::new(Notify::new());
    let (host, events) = host_with_events(
        task(),
        Some(FailAfter {
            step: "Transcode1080p",
            completed: Arc::clone(&completed),
        }),
    );
    let mut receiver = host.events();
    tokio::spawn(async move {
        while let Ok(event) = receiver.recv().await {
            if matches!(&event.kind, EventKind::StepCompleted { step, .. } if step.name == "Transcode720p") {
                completed.notify_one();
            }
        }
    });
    let outcome = run(&host, request(&source, None)).await;
    assert_eq!(
        outcome.status(),
        TaskStatus::Compensated,
        "{:?}",
        outcome.progress.error
    );
    assert_eq!(step(&outcome, "Transcode720p").status, StepStatus::Compensated);
    assert_eq!(step(&outcome, "Transcode1080p").status, StepStatus::Failed);
    assert_eq!(step(&outcome, "Transcode4K").status, StepStatus::Skipped);
    let compensated: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepCompensating { step, .. } => Some(step.name.to_string()),
            _ => None,
        })
        .collect();
    // Reverse order of completion; the failed and the skipped member are
    // not compensated (nor ExtractMetadata, which has nothing to undo).
    assert_eq!(compensated, ["Transcode720p", "UploadVideo"]);
    assert_eq!(
        objects_of(&host, outcome.progress.task_id).await,
        0,
        "the 720p output and the upload are deleted"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_mid_transcode_kills_ffmpeg_and_leaves_no_object() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_video(dir.path(), "long.mp4", 1920, 1080, 20, 25);
    // The slowest preset keeps ffmpeg busy long enough to be caught.
    let ffmpeg = Ffmpeg {
        preset: "veryslow".to_owned(),
        ..Ffmpeg::default()
    };
    let host = host(
        VideoTranscode::new(ffmpeg, Notifier::new(&WebhookConfig::default()).unwrap()),
        None,
    );
    let mut events = host.events();
    let handle = host.submit::<VideoTranscode>(request(&source, None)).await.unwrap();
    let task_id = handle.id();
    // Wait until a transcode reports progress: ffmpeg is running.
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => panic!("the host stopped"),
        };
        if event.task_id == task_id
            && matches!(&event.kind, EventKind::StepProgress { step, fraction, .. }
                if step.name.starts_with("Transcode") && *fraction > 0.0)
        {
            break;
        }
    }
    assert!(
        !ffmpeg_children(task_id).is_empty(),
        "ffmpeg runs before the cancellation"
    );
    host.cancel(task_id).await.unwrap();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Cancelled);
    assert_eq!(
        ffmpeg_children(task_id),
        Vec::<u32>::new(),
        "no ffmpeg outlives the cancellation"
    );
    assert_eq!(objects_of(&host, task_id).await, 0, "no object is left in any bucket");
    host.shutdown().await;
}

/// A webhook receiver on loopback: the requests it took.
async fn receiver() -> (String, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
    let taken = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&taken);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?token=secret", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, taken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_notification_is_signed_and_internal_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_video(dir.path(), "small.mp4", 1280, 720, 1, 5);
    let (url, taken) = receiver().await;
    let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
    let config = WebhookConfig {
        secret: Some(secret.clone()),
        allow_hosts: vec!["127.0.0.1".to_owned()],
        ..WebhookConfig::default()
    };
    let host = host(
        VideoTranscode::new(Ffmpeg::default(), Notifier::new(&config).unwrap()),
        None,
    );
    let outcome = run(&host, request(&source, Some(url.clone()))).await;
    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    let response = outcome.response.unwrap();
    let notified = response.notified.as_ref().unwrap();
    assert_eq!(notified.status, 200);
    assert!(
        !notified.url.contains("token"),
        "the URL's query is not kept: {}",
        notified.url
    );
    assert_eq!(response.renditions.len(), 1, "720p only: the source is 720 lines tall");

    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 1);
    let (headers, body) = &taken[0];
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    secret
        .verify(
            &header("webhook-id"),
            &header("webhook-timestamp"),
            body,
            &header("webhook-signature"),
        )
        .expect("a valid Standard Webhooks signature");
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json["taskId"], outcome.progress.task_id.to_string());
    assert_eq!(json["event"], "video.transcoded");
    assert_eq!(json["result"]["renditions"][0]["height"], 720);
    host.shutdown().await;

    // Without the host allowed, loopback is an internal address: refused
    // for good, and the task compensates.
    let host = self::host(task(), None);
    let outcome = run(&host, request(&source, Some(url))).await;
    assert_eq!(outcome.status(), TaskStatus::Compensated);
    let notify = step(&outcome, "NotifyWebhook");
    assert_eq!(notify.attempts, 1);
    assert!(
        notify
            .error
            .as_deref()
            .unwrap()
            .contains("refused: `127.0.0.1` resolves to 127.0.0.1, a loopback address"),
        "{:?}",
        notify.error
    );
    assert_eq!(objects_of(&host, outcome.progress.task_id).await, 0);
    host.shutdown().await;
}
