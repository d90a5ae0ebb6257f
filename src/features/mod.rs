//! Model inputs: OpenL3's audio framing and log-mel front end, and image preprocessing.
//! The settings are fixed by the pretrained networks; they are recorded in every model
//! file so a file made for other settings is refused rather than misread.

pub mod audio;
pub mod image;
pub mod spectrogram;

use serde::{Deserialize, Serialize};

/// The feature settings this build implements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Audio sample rate (Hz); mono.
    pub sample_rate: i64,
    /// Samples per OpenL3 frame (1 s).
    pub frame_samples: i64,
    /// Samples between OpenL3 frames (0.1 s).
    pub frame_hop: i64,
    /// OpenL3 frames per 10 s window.
    pub audio_frames: i64,
    /// STFT size and hop of OpenL3's front end.
    pub n_dft: i64,
    pub n_hop: i64,
    /// Mel bands.
    pub n_mels: i64,
    /// Images per window (one per second) and their side.
    pub images: i64,
    pub image_size: i64,
    /// Per-channel (RGB) normalisation of 0..1 pixels: statistics of the TAU dataset's
    /// frames, from the authors' code.
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

impl Default for FeatureSpec {
    fn default() -> Self {
        FeatureSpec {
            sample_rate: 48_000,
            frame_samples: 48_000,
            frame_hop: 4_800,
            audio_frames: 96,
            n_dft: 2048,
            n_hop: 242,
            n_mels: 256,
            images: 10,
            image_size: 224,
            image_mean: [0.432, 0.413, 0.417],
            image_std: [0.231, 0.230, 0.231],
        }
    }
}

impl FeatureSpec {
    /// Samples in a 10 s window.
    pub fn window_samples(&self) -> i64 {
        self.sample_rate * self.images
    }
    /// STFT frames per OpenL3 frame ('same' padding): 199.
    pub fn spectrogram_frames(&self) -> i64 {
        (self.frame_samples + self.n_hop - 1) / self.n_hop
    }
    /// Frequency bins of the STFT: 1025.
    pub fn n_bins(&self) -> i64 {
        self.n_dft / 2 + 1
    }
}
