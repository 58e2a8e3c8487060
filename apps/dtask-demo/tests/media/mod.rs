//! Test media made with ffmpeg's `testsrc` and `sine` sources (never
//! downloaded), and `ffprobe` as the oracle of what a file holds.

#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Fails the test (with `CI=true`, or always: the demo's VideoTranscode
/// needs them) when ffmpeg or ffprobe is missing.
pub(crate) fn require_ffmpeg() {
    for program in ["ffmpeg", "ffprobe"] {
        let runs = Command::new(program)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            runs,
            "`{program}` is not installed (apt-get install ffmpeg; scripts/test does it)"
        );
    }
}

/// Writes a `width`×`height` H.264 + AAC MP4 of `secs` seconds at `fps`
/// frames per second into `dir`, named `name`.
pub(crate) fn make_video(dir: &Path, name: &str, width: u32, height: u32, secs: u32, fps: u32) -> PathBuf {
    require_ffmpeg();
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc=size={width}x{height}:rate={fps}:duration={secs}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={secs}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make the test video");
    path
}

/// What ffprobe says of a file: its streams and format, as JSON.
pub(crate) fn ffprobe(path: &Path) -> serde_json::Value {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe cannot read {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe's JSON")
}

/// The first stream of `kind` (`video`, `audio`) in an ffprobe report.
pub(crate) fn stream<'a>(report: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    report["streams"].as_array()?.iter().find(|s| s["codec_type"] == kind)
}

/// Checks with ffprobe that the MP4 at `path` is H.264 `width`×`height`
/// with AAC audio, lasting `secs` seconds (within a frame or two), with its
/// index (`moov`) before its media (`mdat`), as `+faststart` puts it.
pub(crate) fn assert_rendition(path: &Path, width: u64, height: u64, secs: f64) {
    let report = ffprobe(path);
    let video = stream(&report, "video").expect("a video stream");
    assert_eq!(video["codec_name"], "h264", "{}", path.display());
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(width), Some(height))
    );
    assert_eq!(stream(&report, "audio").expect("an audio stream")["codec_name"], "aac");
    let duration: f64 = report["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        (duration - secs).abs() < 0.25,
        "{} lasts {duration} s, not {secs}",
        path.display()
    );
    let bytes = std::fs::read(path).unwrap();
    let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag);
    assert!(at(b"moov") < at(b"mdat"), "{}: moov is not before mdat", path.display());
}

/// The live ffmpeg processes this process started for task `task_id`:
/// their command line names a file in the task's scratch directory, which
/// bears its id (tests run side by side in one process).
pub(crate) fn ffmpeg_children(task_id: impl std::fmt::Display) -> Vec<u32> {
    let me = std::process::id();
    let task_id = task_id.to_string();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split at its end.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let for_task = String::from_utf8_lossy(&cmdline).contains(&task_id);
        if comm == "ffmpeg" && ppid == Some(me) && for_task {
            children.push(pid);
        }
    }
    children
}
