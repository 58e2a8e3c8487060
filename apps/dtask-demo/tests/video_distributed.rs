//! VideoTranscode in Distributed mode with separate OS processes: one
//! `api` and three `worker`s of the demo binary, on RabbitMQ and on Redis
//! Streams, with the S3 server. The renditions are read back from S3 and
//! checked with ffprobe; the skipped 4K rendition shows its condition's
//! snapshot; the download link serves the tallest rendition. A worker
//! SIGKILLed in the middle of a transcode (found by the `worker` its step's
//! progress names): the task completes on another worker, every output
//! stored exactly once.

mod cluster;
mod media;

use cluster::{Broker, Cluster, finish, until};
use dtask::infra::{ObjectStore, ObjectStoreExt};
use dtask::{StepStatus, TaskStatus};
use dtask_demo::client::ApiClient;
use dtask_demo::video::VideoTranscodeResponse;
use media::{assert_rendition, make_video};

/// Runs the sources through `cluster`; with `spread`, checks that the
/// members of the 2160p source's TranscodeAll (a distributed group) ran on
/// at least two workers. RabbitMQ hands consecutive messages to its
/// consumers in turn, so three members published at once go to three
/// workers; Redis Streams serves whichever consumer reads first, which may
/// take two in a row, so there the workers are only shown.
async fn run_cluster(cluster: Cluster, spread: bool) {
    media::require_ffmpeg();
    let (api, url) = cluster.api();
    let workers = [cluster.worker(), cluster.worker(), cluster.worker()];
    let client = ApiClient::new(&url).expect("a client");
    let store = cluster.s3_store().await;
    let dir = tempfile::tempdir().expect("a temporary directory");

    let sources = [
        (
            make_video(dir.path(), "hd.mp4", 1920, 1080, 2, 10),
            2.0,
            vec![(1280, 720), (1920, 1080)],
        ),
        (
            make_video(dir.path(), "uhd.mp4", 3840, 2160, 1, 5),
            1.0,
            vec![(1280, 720), (1920, 1080), (3840, 2160)],
        ),
    ];
    for (source, secs, expected) in &sources {
        let task = client.submit_video(source, None).await.expect("submitted");
        let last = finish(&client, &task).await;
        assert_eq!(last.status, TaskStatus::Completed, "{:?}", last.error);
        let response: VideoTranscodeResponse = client.result(&task.links.result).await.expect("the result");
        assert_eq!(response.renditions.len(), expected.len());
        for (rendition, (width, height)) in response.renditions.iter().zip(expected) {
            assert!(rendition.key.starts_with(&task.task_id), "{}", rendition.key);
            let bytes = store.get_bytes(&rendition.bucket, &rendition.key).await.expect("in S3");
            let path = dir.path().join(format!("{}-{}", task.task_id, rendition.name));
            std::fs::write(&path, &bytes).unwrap();
            assert_rendition(&path, *width, *height, *secs);
        }
        let four_k = last.steps.iter().find(|s| s.name == "Transcode4K").unwrap();
        let condition = four_k.condition.as_ref().expect("the 4K condition's snapshot");
        assert_eq!(condition.observed[0].value, response.source.height.to_string());
        if response.source.height < 2160 {
            assert_eq!(four_k.status, StepStatus::Skipped);
            assert!(!condition.holds);
        } else {
            assert_eq!(four_k.status, StepStatus::Completed);
        }
        // Each Worker step names the worker that ran it, as GET /api/workers does.
        let registered: serde_json::Value = reqwest::get(format!("{url}/api/workers"))
            .await
            .expect("the workers")
            .json()
            .await
            .expect("JSON");
        let ids: Vec<&str> = registered["items"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|w| w["id"].as_str())
            .collect();
        // The registry is shared by every cluster on this Redis (tests run
        // side by side): this cluster's three workers are among them.
        assert!(ids.len() >= 3, "{registered}");
        for step in last
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Completed && s.name != "UploadVideo")
        {
            let worker = step.worker.as_deref().expect("the worker that ran it");
            assert!(
                ids.contains(&worker),
                "{} ran on {worker}, not a registered worker",
                step.name
            );
            eprintln!("{}: {} ran on {worker}", task.task_id, step.name);
        }
        let mut members: Vec<&str> = (last.steps.iter())
            .filter(|s| s.group.as_deref() == Some("TranscodeAll") && s.status == StepStatus::Completed)
            .filter_map(|s| s.worker.as_deref())
            .collect();
        members.sort_unstable();
        members.dedup();
        if spread && expected.len() == 3 {
            assert!(members.len() >= 2, "the three transcodes ran on {members:?}");
        }
        // The download link serves the tallest rendition.
        let tallest = dir.path().join(format!("{}-download.mp4", task.task_id));
        client
            .download(&task.links.download, &tallest)
            .await
            .expect("the download");
        let (width, height) = *expected.last().unwrap();
        assert_rendition(&tallest, width, height, *secs);
    }
    drop((workers, api));
    cluster.remove_queue().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_transcode_on_rabbitmq_with_three_workers() {
    run_cluster(Cluster::new(Broker::RabbitMq), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_transcode_on_redis_streams_with_three_workers() {
    run_cluster(
        Cluster::new(Broker::RedisStreams).serializers("msgpack", "protobuf"),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_transcode_leaves_each_output_exactly_once() {
    media::require_ffmpeg();
    // A slow preset keeps the transcodes running long enough to be caught.
    let cluster = Cluster::new(Broker::RedisStreams).env("DTASK_X264_PRESET", "slow");
    let (api, url) = cluster.api();
    let mut workers = vec![cluster.worker(), cluster.worker(), cluster.worker()];
    let client = ApiClient::new(&url).expect("a client");
    let store = cluster.s3_store().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let source = make_video(dir.path(), "long.mp4", 1920, 1080, 5, 25);
    let task = client.submit_video(&source, None).await.expect("submitted");

    let running = until(&client, &task, |p| {
        p.steps.iter().any(|s| {
            s.name.starts_with("Transcode") && s.fraction.is_some_and(|f| f > 0.0) && s.status == StepStatus::Running
        })
    })
    .await;
    let step = running
        .steps
        .iter()
        .find(|s| s.name.starts_with("Transcode") && s.status == StepStatus::Running)
        .unwrap();
    let worker = step.worker.clone().expect("the running step names its worker");
    let pid: u32 = worker.rsplit(':').next().unwrap().parse().unwrap();
    let killed = workers
        .iter()
        .position(|w| w.pid() == pid)
        .expect("one of this cluster's workers");
    workers[killed].kill_hard();

    let last = finish(&client, &task).await;
    assert_eq!(last.status, TaskStatus::Completed, "{:?}", last.error);
    let rerun = last.steps.iter().find(|s| s.name == step.name).unwrap();
    assert!(rerun.attempts >= 2, "{} ran again: {rerun:?}", step.name);
    assert_ne!(rerun.worker.as_deref(), Some(worker.as_str()), "on another worker");
    // Each output once: the keys are deterministic, a rerun overwrites.
    let stored = store.list("transcoded-videos", &task.task_id).await.expect("list");
    let mut keys: Vec<&str> = stored.iter().map(|o| o.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys.len(), 3, "720p, 1080p and the thumbnail: {keys:?}");
    let response: VideoTranscodeResponse = client.result(&task.links.result).await.expect("the result");
    for rendition in &response.renditions {
        let bytes = store.get_bytes(&rendition.bucket, &rendition.key).await.expect("in S3");
        let path = dir.path().join(&rendition.name);
        std::fs::write(&path, &bytes).unwrap();
        assert_rendition(&path, u64::from(rendition.width), u64::from(rendition.height), 5.0);
    }
    drop((workers, api));
    cluster.remove_queue().await;
}
