//! Sliding audio-visual windows: the last 10 s of a stream's audio and video, emitted
//! every hop.

use serde::{Deserialize, Serialize};

use crate::config::Problems;

/// Length of a window in seconds. The DCASE 2021 model classifies 10 s clips: 96 OpenL3
/// frames and 10 images.
pub const WINDOW_SECONDS: f64 = 10.0;

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
        if self.hop_s.is_nan() || self.hop_s <= 0.0 {
            problems.push(
                "window.hop_s",
                format!("must be positive, not {}", self.hop_s),
            );
        } else if self.hop_s > self.length_s {
            problems.push(
                "window.hop_s",
                format!("{} s is longer than the window ({} s): audio between windows would never be classified", self.hop_s, self.length_s),
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
}
