//! `avscene record`: labelled training clips from a live stream, through the very capture
//! and window code that serves, without the daemon (which records itself from its
//! running streams: `crate::record`). Consecutive, non-overlapping 10 s windows are
//! written in the dataset layout of `crate::record::clip`. Each clip is complete on disk
//! before the next begins; Ctrl-C keeps every clip written.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::capture::{CaptureConfig, Drained, StreamSpec, Until, spawn, window_queue};
use crate::features::WINDOW_SECONDS;
use crate::record::{ClipError, check_label, check_minutes, clips_in_minutes, gap_in, write_clip};
use crate::window::WindowConfig;

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
    /// A bad `--label` or `--minutes`.
    #[error("--{0}")]
    Option(ClipError),
    #[error("{0}")]
    Write(ClipError),
    #[error("stream '{stream}' failed before the first clip: {reason}")]
    Source { stream: String, reason: String },
}

impl RecordOptions {
    /// A label that names a folder safely, and a positive duration.
    pub fn validate(&self) -> Result<(), RecordError> {
        check_label(&self.label).map_err(RecordError::Option)?;
        check_minutes(self.minutes).map_err(RecordError::Option)
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
        if let Some(gap) = gap_in(&window) {
            summary.gappy += 1;
            progress(&format!("left out a window: {gap}"));
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
                failure = Some(RecordError::Write(e));
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
