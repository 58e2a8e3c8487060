//! The demo binary's VideoTranscode commands, run as a user would: `video`
//! writes the renditions and the thumbnail; `submit-video` transcodes
//! through a running server and downloads the tallest rendition; a worker
//! without ffmpeg refuses to start, in one line.

mod media;
mod support;

use std::process::Command;
use std::time::Duration;

use media::{assert_rendition, ffprobe, make_video, stream};

fn demo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dtask-demo"))
}

#[test]
fn video_writes_every_rendition_the_source_allows_and_the_thumbnail() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_video(dir.path(), "clip.mp4", 1280, 720, 1, 5);
    let out = dir.path().join("out");
    let run = demo()
        .arg("video")
        .arg(&source)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_rendition(&out.join("clip-720p.mp4"), 1280, 720, 1.0);
    let report = ffprobe(&out.join("clip-thumbnail.jpg"));
    assert_eq!(stream(&report, "video").unwrap()["codec_name"], "mjpeg");
    assert!(!out.join("clip-1080p.mp4").exists(), "never upscaled");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("Transcode1080p: skipped (the source is 720 lines tall)"),
        "{stdout}"
    );
    assert!(stdout.contains("Transcode4K: skipped"), "{stdout}");
}

#[test]
fn a_worker_without_ffmpeg_refuses_to_start_in_one_line() {
    let run = demo()
        .arg("worker")
        .env("DTASK_MODE", "distributed")
        .env("DTASK_FFMPEG", "/nonexistent/ffmpeg")
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: `/nonexistent/ffmpeg` cannot be run")
            && lines[0].contains("apt-get install ffmpeg"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_video_transcodes_through_the_server_and_downloads_the_tallest_rendition() {
    let server = support::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let source = make_video(dir.path(), "talk.mp4", 1920, 1080, 1, 5);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_dtask-demo"))
        .arg("submit-video")
        .arg(&source)
        .args(["--server", &server.url, "--output"])
        .arg(&out)
        .env_remove("DTASK_SERVER")
        .kill_on_drop(true)
        .output();
    let run = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("submit-video ends within 2 minutes")
        .expect("submit-video runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_rendition(&out.join("talk-1080p.mp4"), 1920, 1080, 1.0);
    assert!(!out.join("talk-720p.mp4").exists(), "only the tallest is downloaded");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("720p: 1280x720") && stdout.contains("1080p: 1920x1080"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Transcode4K: skipped (the source is 1080 lines tall)"),
        "{stdout}"
    );
    server.stop().await;
}
