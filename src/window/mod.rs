//! Sliding audio-visual windows: each stream's audio and frames, placed by their
//! timestamps (running time), cut into 10 s windows every hop. Gaps are filled with
//! silence and missing frames by the previous frame, and every fill is counted on the
//! window, so nothing about a fault is hidden and nothing crashes. Memory is bounded by
//! one window (plus the half-second of audio before it that OpenL3's first frame needs).

//!
//! `mod.rs` holds the settings and the window; `assembler.rs` builds windows.

mod assembler;

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::features::{AUDIO_FRAME_HOP, SAMPLE_RATE, WINDOW_SECONDS};
use crate::problems::Problems;

pub use assembler::{Assembler, AssemblerCounts, END_TOLERANCE};

/// `[window]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Window length in seconds; the model needs 10.
    pub length_s: f64,
    /// Time between consecutive windows in seconds: a multiple of 0.1 s (the OpenL3 frame
    /// grid) and at most the length.
    pub hop_s: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            length_s: WINDOW_SECONDS,
            hop_s: 1.0,
        }
    }
}

impl WindowConfig {
    pub fn validate(&self, problems: &mut Problems) {
        if self.length_s != WINDOW_SECONDS {
            problems.push(
                "window.length_s",
                format!(
                    "must be {WINDOW_SECONDS} (the model classifies 10 s windows), not {}",
                    self.length_s
                ),
            );
        }
        if !self.hop_s.is_finite() || self.hop_s <= 0.0 {
            problems.push(
                "window.hop_s",
                format!("must be a positive number of seconds, not {}", self.hop_s),
            );
        } else if self.hop_s > WINDOW_SECONDS {
            problems.push(
                "window.hop_s",
                format!(
                    "{} s is longer than the window ({WINDOW_SECONDS} s): audio between windows would never be classified",
                    self.hop_s
                ),
            );
        } else if ((self.hop_s * 10.0).round() - self.hop_s * 10.0).abs() > 1e-9 {
            problems.push(
                "window.hop_s",
                format!(
                    "must be a multiple of 0.1 s (the audio frame grid), not {}",
                    self.hop_s
                ),
            );
        }
    }

    /// The hop in samples (a multiple of 4800).
    pub fn hop_samples(&self) -> u64 {
        (self.hop_s * 10.0).round() as u64 * (SAMPLE_RATE / 10)
    }
}

/// One 10 s window of one stream.
#[derive(Debug, Clone)]
pub struct Window {
    pub stream: Arc<str>,
    /// Index of the window in the stream, counted for the life of the process: it goes
    /// on across restarts of the stream, so `(run, stream, seq)` identifies a window.
    pub seq: u64,
    /// The timeline the window belongs to: unique in the process, new whenever the
    /// stream's time starts over (a restart, or a gap longer than a window). Windows of
    /// one timeline can share encoded frames; of two, never.
    pub timeline: u64,
    /// Stream time of the window's start, in samples at 48 kHz since its timeline began
    /// (a multiple of the hop).
    pub start_sample: u64,
    /// Wall-clock time of the start and end.
    pub start_wall: SystemTime,
    pub end_wall: SystemTime,
    /// Exactly [`WINDOW_SAMPLES`] mono samples.
    pub audio: Vec<f32>,
    /// The [`LEAD_SAMPLES`] before the window (zeros before the stream began).
    pub audio_lead: Vec<f32>,
    /// Exactly [`IMAGES`] RGB frames of [`IMAGE_BYTES`]; consecutive windows share
    /// them.
    pub frames: Vec<Arc<[u8]>>,
    /// Samples of the window that are silence inserted for missing audio.
    pub filled_samples: usize,
    /// Frames of the window that repeat an earlier frame (or are black) because none
    /// arrived for their second.
    pub filled_frames: usize,
    /// When the window was complete (for queue-wait and staleness).
    pub ready_at: std::time::Instant,
}

impl Window {
    /// Position of the window's first OpenL3 frame on the stream's 0.1 s grid.
    pub fn first_frame_position(&self) -> u64 {
        self.start_sample / AUDIO_FRAME_HOP as u64
    }

    /// The level of the last second of sound in dBFS (−120 for digital silence).
    pub fn last_second_dbfs(&self) -> f32 {
        let tail = &self.audio[self.audio.len().saturating_sub(SAMPLE_RATE as usize)..];
        let sum: f64 = tail.iter().map(|&s| (s as f64) * (s as f64)).sum();
        let rms = (sum / tail.len().max(1) as f64).sqrt();
        (20.0 * rms.max(1e-6).log10()) as f32
    }

    /// Root mean square of the audio.
    pub fn audio_rms(&self) -> f32 {
        let sum: f64 = self.audio.iter().map(|&s| (s as f64) * (s as f64)).sum();
        (sum / self.audio.len().max(1) as f64).sqrt() as f32
    }
}
