//! Model inputs, defined once: the sizes the pretrained networks fix (48 kHz mono audio,
//! 1 s OpenL3 frames every 0.1 s, ten 224 × 224 RGB images per 10 s window), OpenL3's
//! framing of a window's audio, its log-mel front end, and the image tensors. The live
//! engine, training, evaluation, `classify` and `bench` all prepare their inputs here, and
//! the capture tails' caps are written from the same constants, so what the model sees
//! live is what it was trained on. The settings are recorded in every model file
//! ([`FeatureSpec`]) so a file made for other settings is refused rather than misread.

pub mod audio;
pub mod image;
pub mod spectrogram;

use serde::{Deserialize, Serialize};

/// Audio sample rate of every input (Hz), mono.
pub const SAMPLE_RATE: u64 = 48_000;
/// Images per window: one per second of a 10 s window.
pub const IMAGES: usize = 10;
/// Length of a window: the DCASE 2021 model classifies 10 s clips.
pub const WINDOW_SECONDS: f64 = IMAGES as f64;
/// Audio samples in a window.
pub const WINDOW_SAMPLES: usize = IMAGES * SAMPLE_RATE as usize;
/// Samples of one OpenL3 frame (1 s) and between two frames (0.1 s).
pub const AUDIO_FRAME_SAMPLES: usize = SAMPLE_RATE as usize;
pub const AUDIO_FRAME_HOP: usize = AUDIO_FRAME_SAMPLES / 10;
/// Audio before the window that its first OpenL3 frame (centred on the window start)
/// covers: half a frame.
pub const LEAD_SAMPLES: usize = AUDIO_FRAME_SAMPLES / 2;
/// OpenL3 frames per window, centred on 0.0, 0.1, … 9.5 s: 96.
pub const AUDIO_FRAMES: usize = (WINDOW_SAMPLES - LEAD_SAMPLES) / AUDIO_FRAME_HOP + 1;
/// Side of an image and its size in bytes (packed RGB).
pub const IMAGE_SIDE: usize = 224;
pub const IMAGE_BYTES: usize = IMAGE_SIDE * IMAGE_SIDE * 3;
/// Per-channel (RGB) normalisation of 0..1 pixels: statistics of the TAU dataset's
/// frames, from the authors' code.
pub const IMAGE_MEAN: [f64; 3] = [0.432, 0.413, 0.417];
pub const IMAGE_STD: [f64; 3] = [0.231, 0.230, 0.231];
/// OpenL3's front end: STFT size and hop, mel bands.
pub const N_DFT: i64 = 2048;
pub const N_HOP: i64 = 242;
pub const N_MELS: i64 = 256;
/// Most OpenL3 frames per forward call: bounds activation memory (≈ 100 MB per 8 frames
/// at full size) and is faster per frame on CPU than one huge batch. Batches are split
/// evenly under it (`model::even_chunks`).
pub const AUDIO_CHUNK: i64 = 8;
/// Most images per image-branch forward call in eval mode.
pub const IMAGE_CHUNK: i64 = 16;

/// The feature settings this build implements, as recorded in model files.
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
    /// Per-channel (RGB) normalisation of 0..1 pixels.
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

impl Default for FeatureSpec {
    fn default() -> Self {
        FeatureSpec {
            sample_rate: SAMPLE_RATE as i64,
            frame_samples: AUDIO_FRAME_SAMPLES as i64,
            frame_hop: AUDIO_FRAME_HOP as i64,
            audio_frames: AUDIO_FRAMES as i64,
            n_dft: N_DFT,
            n_hop: N_HOP,
            n_mels: N_MELS,
            images: IMAGES as i64,
            image_size: IMAGE_SIDE as i64,
            image_mean: IMAGE_MEAN,
            image_std: IMAGE_STD,
        }
    }
}

impl FeatureSpec {
    /// STFT frames per OpenL3 frame ('same' padding): 199.
    pub fn spectrogram_frames(&self) -> i64 {
        (self.frame_samples + self.n_hop - 1) / self.n_hop
    }
    /// Frequency bins of the STFT: 1025.
    pub fn n_bins(&self) -> i64 {
        self.n_dft / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constants_are_the_papers() {
        assert_eq!(AUDIO_FRAMES, 96);
        assert_eq!(WINDOW_SAMPLES, 480_000);
        assert_eq!(LEAD_SAMPLES, 24_000);
        assert_eq!(FeatureSpec::default().spectrogram_frames(), 199);
    }
}
