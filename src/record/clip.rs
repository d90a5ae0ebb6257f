//! The clip format of a recorded dataset, shared by `avscene record` and recording from
//! the running daemon: `OUT/<label>/<stream>-<start>.wav` (48 kHz mono float) and `.mkv`
//! (the window's ten 224×224 frames, lossless FFV1 at 1 fps), each with a line in
//! `OUT/recordings.csv`: label, stream, start time and the location `<stream>-<day>`, so
//! a split keeps a day's recording on one side.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::capture::{write_video, write_wav};
use crate::features::{IMAGES, SAMPLE_RATE, WINDOW_SECONDS};
use crate::window::Window;

/// The index of a recorded dataset, beside its label folders.
pub const RECORDINGS: &str = "recordings.csv";

/// The columns of `recordings.csv`: TAU's `meta.csv` and what a recording adds.
const COLUMNS: &str = "filename_audio\tfilename_video\tscene_label\tidentifier\tstream\tstart_utc\tfilled_samples\tfilled_frames";

/// A window is left out when more than this much of it is filler for a stalled source.
const MAX_FILLED_FRAMES: usize = 2;
const MAX_FILLED_SAMPLES: usize = 2 * SAMPLE_RATE as usize;

/// The longest recording one request may ask for: a week.
pub const MAX_MINUTES: f64 = 10_080.0;

/// Why a clip or a request to record cannot be.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClipError {
    #[error(
        "label '{0}': use letters, digits, '_', '-' or '.' (it names a folder and the published label)"
    )]
    Label(String),
    #[error("minutes {0}: must be more than 0 and at most 10080 (a week)")]
    Minutes(f64),
    #[error("{}: {reason}", .file.display())]
    Write { file: PathBuf, reason: String },
}

/// A label that names a folder safely.
pub fn check_label(label: &str) -> Result<(), ClipError> {
    let valid = !label.is_empty()
        && label.len() <= 64
        && !label.starts_with('.')
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ClipError::Label(label.to_string()))
    }
}

/// A duration that is finite, positive and at most a week (the clip count comes from it).
pub fn check_minutes(minutes: f64) -> Result<(), ClipError> {
    if minutes.is_finite() && minutes > 0.0 && minutes <= MAX_MINUTES {
        Ok(())
    } else {
        Err(ClipError::Minutes(minutes))
    }
}

/// Clips a number of minutes holds.
pub fn clips_in_minutes(minutes: f64) -> usize {
    (minutes * 60.0 / WINDOW_SECONDS).round().max(1.0) as usize
}

/// Why a window is not worth a clip: the source stalled through it (as a sentence).
pub fn gap_in(window: &Window) -> Option<String> {
    (window.filled_frames > MAX_FILLED_FRAMES || window.filled_samples > MAX_FILLED_SAMPLES).then(
        || {
            format!(
                "the source stalled ({} of {IMAGES} frames and {:.1} s of sound missing)",
                window.filled_frames,
                window.filled_samples as f64 / SAMPLE_RATE as f64
            )
        },
    )
}

/// Write one window as `<label>/<stream>-<start>.wav` + `.mkv` and its metadata line;
/// returns the WAV's path. Files appear whole (written under a temporary name, then
/// renamed) and the metadata line last, so an interruption never leaves half a clip.
pub fn write_clip(out: &Path, label: &str, window: &Window) -> Result<PathBuf, ClipError> {
    let write_error = |file: &Path, reason: String| ClipError::Write {
        file: file.to_path_buf(),
        reason,
    };
    let folder = out.join(label);
    std::fs::create_dir_all(&folder)
        .map_err(|e| write_error(&folder, format!("cannot create: {e}")))?;
    let start = humantime::format_rfc3339_seconds(window.start_wall).to_string();
    let day = start.get(..10).unwrap_or("unknown-day").to_string();
    let stamp: String = start
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut name = format!("{}-{stamp}", window.stream);
    let mut n = 1;
    while folder.join(format!("{name}.wav")).exists() {
        n += 1;
        name = format!("{}-{stamp}-{n}", window.stream);
    }
    let relative = |extension: &str| format!("{label}/{name}.{extension}");
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
