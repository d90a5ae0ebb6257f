//! `avscene record`: labelled training clips from a live stream, through the very capture
//! and window code that serves. Consecutive, non-overlapping 10 s windows are written to
//! the folder-per-label layout — `OUT/<label>/<stream>-<start>.wav` (48 kHz mono float)
//! and `.mkv` (the window's ten 224×224 frames, lossless FFV1 at 1 fps) — each with a line
//! in `OUT/recordings.csv`: label, stream, start time and the location `<stream>-<day>`, so
//! a split keeps a day's recording on one side. Each clip is complete on disk before the
//! next begins; Ctrl-C keeps every clip written.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::dataset::RECORDINGS;
use crate::capture::{
    CaptureConfig, Drained, StreamSpec, Until, spawn, window_queue, write_video, write_wav,
};
use crate::features::{IMAGES, SAMPLE_RATE, WINDOW_SECONDS};
use crate::window::{Window, WindowConfig};

/// `avscene record` settings (its command-line options, besides the configuration).
#[derive(Debug, Clone, clap::Args)]
pub struct RecordOptions {
    /// The configured stream to record [default: the first enabled one].
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// The scene being recorded: names the folder and the label the model will publish.
    #[arg(long)]
    pub label: String,
    /// How long to record: minutes × 6 clips of 10 s.
    #[arg(long, value_name = "M")]
    pub minutes: f64,
    /// The dataset folder (folder-per-label layout); recordings are added to it.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The columns of `recordings.csv`: TAU's `meta.csv` and what a recording adds.
const COLUMNS: &str = "filename_audio\tfilename_video\tscene_label\tidentifier\tstream\tstart_utc\tfilled_samples\tfilled_frames";

/// A window is left out when more than this much of it is filler for a stalled source.
const MAX_FILLED_FRAMES: usize = 2;
const MAX_FILLED_SAMPLES: usize = 2 * SAMPLE_RATE as usize;

/// What a recording session did.
#[derive(Debug, Default)]
pub struct RecordSummary {
    pub written: Vec<PathBuf>,
    /// Windows left out because the source stalled through them.
    pub gappy: usize,
    pub interrupted: bool,
    /// The stream ended (a file source) or failed (the reason) before all clips were in.
    pub ended: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "--label '{0}': use letters, digits, '_', '-' or '.' (it names a folder and the published label)"
    )]
    Label(String),
    #[error("--minutes {0}: must be more than 0 and at most 10080 (a week)")]
    Minutes(f64),
    #[error("{}: {reason}", .file.display())]
    Write { file: PathBuf, reason: String },
    #[error("stream '{stream}' failed before the first clip: {reason}")]
    Source { stream: String, reason: String },
}

/// Clips a number of minutes holds.
pub fn clips_in_minutes(minutes: f64) -> usize {
    (minutes * 60.0 / WINDOW_SECONDS).round().max(1.0) as usize
}

impl RecordOptions {
    /// A label that names a folder safely, and a positive duration.
    pub fn validate(&self) -> Result<(), RecordError> {
        let label = &self.label;
        let valid = !label.is_empty()
            && label.len() <= 64
            && !label.starts_with('.')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(RecordError::Label(label.clone()));
        }
        // Finite and bounded (a week): the clip count is computed from it.
        if !(self.minutes.is_finite() && self.minutes > 0.0 && self.minutes <= 10_080.0) {
            return Err(RecordError::Minutes(self.minutes));
        }
        Ok(())
    }
}

/// Record `options.minutes` of `spec` into `options.out`; `progress` hears of every clip.
pub fn record(
    options: &RecordOptions,
    spec: StreamSpec,
    capture: CaptureConfig,
    stop: Arc<AtomicBool>,
    mut progress: impl FnMut(&str),
) -> Result<RecordSummary, RecordError> {
    options.validate()?;
    let target = clips_in_minutes(options.minutes);
    let folder = options.out.join(&options.label);
    std::fs::create_dir_all(&folder).map_err(|e| RecordError::Write {
        file: folder.clone(),
        reason: format!("cannot create: {e}"),
    })?;
    let stream = spec.name.clone();
    // Consecutive, non-overlapping windows: one clip every 10 s.
    let windows = WindowConfig {
        length_s: WINDOW_SECONDS,
        hop_s: WINDOW_SECONDS,
    };
    let (tx, rx) = window_queue(4);
    let handle = spawn(spec, capture, windows, tx);
    let mut summary = RecordSummary::default();
    let mut failure = None;
    let until = Until {
        stop: Some(&stop),
        // Before the first clip a failing source is an error; after it, what was recorded
        // is kept and the reason reported.
        failure: true,
        ..Until::default()
    };
    let drained = handle.drain(&rx, until, |window| {
        if window.filled_frames > MAX_FILLED_FRAMES || window.filled_samples > MAX_FILLED_SAMPLES
        {
            summary.gappy += 1;
            progress(&format!(
                "left out a window: the source stalled ({} of {IMAGES} frames and {:.1} s of sound missing)",
                window.filled_frames,
                window.filled_samples as f64 / SAMPLE_RATE as f64
            ));
            return ControlFlow::Continue(());
        }
        match write_clip(&options.out, &options.label, &window) {
            Ok(audio) => {
                summary.written.push(audio.clone());
                progress(&format!(
                    "clip {}/{target}: {}",
                    summary.written.len(),
                    audio.display()
                ));
                if summary.written.len() >= target {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    handle.stop();
    if let Some(error) = failure {
        return Err(error);
    }
    match drained {
        Drained::Stopped => summary.interrupted = summary.written.len() < target,
        Drained::Failed(reason) if summary.written.is_empty() => {
            return Err(RecordError::Source { stream, reason });
        }
        Drained::Failed(reason) => {
            summary.ended = Some(format!("stream '{stream}' failed: {reason}"));
        }
        Drained::Ended | Drained::Idle(_) => {
            summary.ended = Some(format!("stream '{stream}' ended"));
        }
    }
    Ok(summary)
}

/// Write one window as `<label>/<stream>-<start>.wav` + `.mkv` and its metadata line;
/// returns the WAV's path. Files appear whole (written under a temporary name, then
/// renamed) and the metadata line last, so an interruption never leaves half a clip.
fn write_clip(out: &Path, label: &str, window: &Window) -> Result<PathBuf, RecordError> {
    let start = humantime::format_rfc3339_seconds(window.start_wall).to_string();
    let day = start.get(..10).unwrap_or("unknown-day").to_string();
    let stamp: String = start
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut name = format!("{}-{stamp}", window.stream);
    let mut n = 1;
    while out.join(label).join(format!("{name}.wav")).exists() {
        n += 1;
        name = format!("{}-{stamp}-{n}", window.stream);
    }
    let relative = |extension: &str| format!("{label}/{name}.{extension}");
    let write_error = |file: &Path, reason: String| RecordError::Write {
        file: file.to_path_buf(),
        reason,
    };
    let audio = out.join(relative("wav"));
    let video = out.join(relative("mkv"));
    let partial = |path: &Path| {
        let mut name = path.as_os_str().to_owned();
        name.push(".partial");
        PathBuf::from(name)
    };
    write_wav(&partial(&audio), &window.audio).map_err(|e| write_error(&audio, e.to_string()))?;
    write_video(&partial(&video), &window.frames).map_err(|e| write_error(&video, e))?;
    for path in [&audio, &video] {
        std::fs::rename(partial(path), path).map_err(|e| write_error(path, e.to_string()))?;
    }
    let index = out.join(RECORDINGS);
    let new = std::fs::metadata(&index).map_or(true, |m| m.len() == 0);
    let line = format!(
        "{}\t{}\t{label}\t{}-{day}\t{}\t{start}\t{}\t{}\n",
        relative("wav"),
        relative("mkv"),
        window.stream,
        window.stream,
        window.filled_samples,
        window.filled_frames
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&index)
        .and_then(|mut f| {
            if new {
                writeln!(f, "{COLUMNS}")?;
            }
            f.write_all(line.as_bytes())?;
            f.sync_data()
        })
        .map_err(|e| write_error(&index, e.to_string()))?;
    Ok(audio)
}
