//! `ffprobe` and `ffmpeg` as child processes: what a file holds, a
//! rendition at a given height with its progress, a thumbnail.
//!
//! Every child is killed when its step is cancelled or times out (the
//! future that owns it is dropped, and `kill_on_drop` sends `SIGKILL`), so a
//! cancelled transcode leaves no process behind.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use dtask::prelude::*;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use super::VideoMetadata;

/// Where the two programs are and how hard `ffmpeg` works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ffmpeg {
    /// The `ffmpeg` program (default `ffmpeg`, from `PATH`).
    pub ffmpeg: OsString,
    /// The `ffprobe` program (default `ffprobe`).
    pub ffprobe: OsString,
    /// The x264 preset of the renditions (default `veryfast`): `ultrafast`
    /// … `veryslow` trade speed for size.
    pub preset: String,
}

impl Default for Ffmpeg {
    fn default() -> Self {
        Self {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            preset: "veryfast".to_owned(),
        }
    }
}

/// `ffmpeg` or `ffprobe` cannot be run.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{program}` cannot be run ({reason}): VideoTranscode's workers need ffmpeg and ffprobe \
     (Debian: apt-get install ffmpeg; or set DTASK_FFMPEG and DTASK_FFPROBE)"
)]
pub struct MissingTool {
    program: String,
    reason: String,
}

impl Ffmpeg {
    /// The programs and preset from `DTASK_FFMPEG`, `DTASK_FFPROBE` and
    /// `DTASK_X264_PRESET`, each defaulting as [`Ffmpeg::default`].
    pub fn from_env() -> Self {
        let default = Self::default();
        Self {
            ffmpeg: std::env::var_os("DTASK_FFMPEG").unwrap_or(default.ffmpeg),
            ffprobe: std::env::var_os("DTASK_FFPROBE").unwrap_or(default.ffprobe),
            preset: std::env::var("DTASK_X264_PRESET").unwrap_or(default.preset),
        }
    }

    /// Checks that both programs run (`-version`), for a worker to refuse
    /// to start without them.
    ///
    /// # Errors
    /// [`MissingTool`] naming the program that does not run.
    pub async fn check(&self) -> Result<(), MissingTool> {
        for program in [&self.ffmpeg, &self.ffprobe] {
            let missing = |reason: String| MissingTool {
                program: program.to_string_lossy().into_owned(),
                reason,
            };
            let status = Command::new(program)
                .arg("-version")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| missing(e.to_string()))?;
            if !status.success() {
                return Err(missing(format!("`-version` exited with {status}")));
            }
        }
        Ok(())
    }

    /// What the media file at `path` holds. `name` is the file's name in
    /// the task, for messages.
    ///
    /// # Errors
    /// Permanent when the file is not a video `ffprobe` can read (it will
    /// not become one on retry); transient when `ffprobe` cannot be run.
    pub async fn probe(&self, path: &Path, name: &str) -> Result<VideoMetadata, StepError> {
        self.report(path, name).await?.metadata(name)
    }

    /// The width and height of the image (or first video frame) at `path`.
    ///
    /// # Errors
    /// As [`probe`](Self::probe).
    pub async fn probe_image(&self, path: &Path, name: &str) -> Result<(u32, u32), StepError> {
        let report = self.report(path, name).await?;
        let (_, width, height) = report.frame_size(name)?;
        Ok((width, height))
    }

    async fn report(&self, path: &Path, name: &str) -> Result<Probed, StepError> {
        let mut command = Command::new(&self.ffprobe);
        command
            .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
            .arg(path);
        let output = run(command, &self.ffprobe).await?;
        if !output.status.success() {
            return Err(StepError::permanent(format!(
                "`{name}` is not a video ffprobe can read: {}",
                last_line(&output.stderr)
            )));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| StepError::permanent(format!("ffprobe's report on `{name}` is not what was expected: {e}")))
    }

    /// Encodes `source` (lasting `duration` seconds) into an H.264 + AAC MP4
    /// `height` lines tall at `output` (width keeping the aspect ratio),
    /// reporting the fraction encoded from `ffmpeg -progress`.
    ///
    /// # Errors
    /// Cancelled at once when the step's token fires (the child is killed
    /// first); transient when `ffmpeg` fails (its last error line).
    pub async fn transcode(
        &self,
        cx: &StepContext,
        source: &Path,
        duration: f64,
        height: u32,
        output: &Path,
    ) -> Result<(), StepError> {
        let mut command = self.ffmpeg_command();
        command
            .arg("-i")
            .arg(source)
            .args(["-map", "0:v:0", "-map", "0:a:0?", "-vf"])
            .arg(format!("scale=-2:{height}"))
            .args(["-c:v", "libx264", "-preset", &self.preset, "-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4"])
            .arg(output);
        let label = format!("{height}p");
        let total_us = (duration * 1e6).max(1.0);
        self.supervise(cx, command, |line| {
            // `out_time_us` (and, misnamed, `out_time_ms`) count microseconds.
            let done = line.strip_prefix("out_time_us=")?.trim().parse::<f64>().ok()?;
            let fraction = (done / total_us).clamp(0.0, 1.0);
            Some((
                fraction,
                format!("{label}: {:.1} s of {duration:.1} s encoded", done / 1e6),
            ))
        })
        .await
    }

    /// Writes one JPEG frame of `source` taken `at` seconds in, at most
    /// `height` lines tall, to `output`.
    ///
    /// # Errors
    /// As [`transcode`](Self::transcode).
    pub async fn thumbnail(
        &self,
        cx: &StepContext,
        source: &Path,
        at: f64,
        height: u32,
        output: &Path,
    ) -> Result<(), StepError> {
        let mut command = self.ffmpeg_command();
        command
            .arg("-ss")
            .arg(format!("{at:.3}"))
            .arg("-i")
            .arg(source)
            .args(["-frames:v", "1", "-q:v", "3", "-vf"])
            .arg(format!("scale=-2:{height}"))
            .args(["-f", "image2"])
            .arg(output);
        self.supervise(cx, command, |line| {
            (line.trim() == "progress=end").then(|| (1.0, "thumbnail written".to_owned()))
        })
        .await
    }

    /// `ffmpeg` quiet but for its errors, overwriting its output, writing
    /// its progress report to standard output.
    fn ffmpeg_command(&self) -> Command {
        let mut command = Command::new(&self.ffmpeg);
        command
            .args(["-nostdin", "-y", "-hide_banner", "-loglevel", "error", "-nostats"])
            .args(["-progress", "pipe:1"]);
        command
    }

    /// Runs `ffmpeg` until it exits or the step is cancelled, turning each
    /// line of its `-progress` output into a report with `report`.
    async fn supervise(
        &self,
        cx: &StepContext,
        mut command: Command,
        report: impl Fn(&str) -> Option<(f64, String)>,
    ) -> Result<(), StepError> {
        let mut child = spawn(&mut command, &self.ffmpeg)?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(StepError::transient("ffmpeg started without its output pipes"));
        };
        // The error lines, read beside the progress so neither pipe fills.
        let errors = tokio::spawn(async move {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text).await;
            text
        });
        let mut lines = BufReader::new(stdout).lines();
        let outcome = loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => {
                        if let Some((fraction, message)) = report(&line) {
                            cx.report_progress(fraction, message);
                        }
                    }
                    Ok(None) | Err(_) => break child.wait().await,
                },
                () = cx.cancelled() => {
                    // SIGKILL, then reap it: no process outlives the step.
                    let _ = child.kill().await;
                    errors.abort();
                    return Err(StepError::cancelled());
                }
            }
        };
        let status = outcome.map_err(|e| StepError::transient("waiting for ffmpeg").with_source(e))?;
        let stderr = errors.await.unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(StepError::transient(format!(
                "ffmpeg exited with {status}: {}",
                last_line(&stderr)
            )))
        }
    }
}

fn spawn(command: &mut Command, program: &OsString) -> Result<Child, StepError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| StepError::transient(format!("cannot run `{}`", program.to_string_lossy())).with_source(e))
}

async fn run(mut command: Command, program: &OsString) -> Result<std::process::Output, StepError> {
    let child = spawn(&mut command, program)?;
    child
        .wait_with_output()
        .await
        .map_err(|e| StepError::transient(format!("running `{}`", program.to_string_lossy())).with_source(e))
}

/// The last non-empty line of a program's error output.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no error message")
        .to_owned()
}

/// The part of `ffprobe -print_format json -show_format -show_streams` read.
#[derive(Debug, Deserialize)]
struct Probed {
    #[serde(default)]
    streams: Vec<ProbedStream>,
    format: Option<ProbedFormat>,
}

#[derive(Debug, Deserialize)]
struct ProbedStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ProbedFormat {
    duration: Option<String>,
    format_name: Option<String>,
}

impl Probed {
    /// The first video stream and its frame size.
    fn frame_size(&self, name: &str) -> Result<(&ProbedStream, u32, u32), StepError> {
        let video = self
            .streams
            .iter()
            .find(|s| s.codec_type.as_deref() == Some("video"))
            .ok_or_else(|| StepError::permanent(format!("`{name}` has no video stream")))?;
        match (video.width, video.height) {
            (Some(width), Some(height)) if width > 0 && height > 0 => Ok((video, width, height)),
            _ => Err(StepError::permanent(format!("`{name}`: ffprobe gives no frame size"))),
        }
    }

    fn metadata(&self, name: &str) -> Result<VideoMetadata, StepError> {
        let (video, width, height) = self.frame_size(name)?;
        let duration = self
            .format
            .as_ref()
            .and_then(|f| f.duration.as_deref())
            .or(video.duration.as_deref())
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0)
            // A still image has a video stream but lasts nothing.
            .ok_or_else(|| StepError::permanent(format!("`{name}` is not a video: it has no duration")))?;
        let frame_rate = [&video.avg_frame_rate, &video.r_frame_rate]
            .into_iter()
            .filter_map(|rate| rate.as_deref().and_then(ratio))
            .find(|rate| *rate > 0.0)
            .unwrap_or(0.0);
        Ok(VideoMetadata {
            width,
            height,
            duration_secs: duration,
            codec: video.codec_name.clone().unwrap_or_default(),
            frame_rate,
            container: self
                .format
                .as_ref()
                .and_then(|f| f.format_name.clone())
                .unwrap_or_default(),
            has_audio: self.streams.iter().any(|s| s.codec_type.as_deref() == Some("audio")),
        })
    }
}

/// `30000/1001` as a number; `None` for `0/0` or garbage.
fn ratio(text: &str) -> Option<f64> {
    let (num, den) = text.split_once('/').unwrap_or((text, "1"));
    let (num, den) = (num.parse::<f64>().ok()?, den.parse::<f64>().ok()?);
    (den != 0.0).then(|| num / den).filter(|r| r.is_finite())
}

#[cfg(test)]
mod tests {
    use super::{Probed, ratio};

    #[test]
    fn frame_rates_are_read_from_ratios() {
        assert_eq!(ratio("25/1"), Some(25.0));
        assert!((ratio("30000/1001").unwrap() - 29.97).abs() < 0.01);
        assert_eq!(ratio("0/0"), None);
        assert_eq!(ratio("x"), None);
    }

    #[test]
    fn a_still_image_is_not_a_video() {
        let probed: Probed = serde_json::from_str(
            r#"{"streams":[{"codec_type":"video","codec_name":"mjpeg","width":640,"height":480,
                "avg_frame_rate":"0/0","r_frame_rate":"25/1"}],
               "format":{"format_name":"image2"}}"#,
        )
        .unwrap();
        let error = probed.metadata("photo.jpg").unwrap_err();
        assert!(error.is_permanent());
        assert!(error.message().contains("no duration"), "{}", error.message());
    }

    #[test]
    fn audio_alone_is_not_a_video() {
        let probed: Probed =
            serde_json::from_str(r#"{"streams":[{"codec_type":"audio"}],"format":{"duration":"3.0"}}"#).unwrap();
        assert!(
            probed
                .metadata("song.mp3")
                .unwrap_err()
                .message()
                .contains("no video stream")
        );
    }
}
