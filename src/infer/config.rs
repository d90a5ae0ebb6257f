//! `[inference]`: how windows are batched through the model.

use serde::{Deserialize, Serialize};

use crate::problems::Problems;

/// The most windows `inference.queue_capacity` may hold (≈ 2 MB each).
pub const MAX_QUEUE: usize = 1024;

/// `[inference]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Most windows run through the model in one batch (1..=256).
    pub max_batch: usize,
    /// Longest a window waits for a batch to fill, in milliseconds (0..=10000).
    pub max_wait_ms: u64,
    /// Windows waiting for the model, across all streams; when full, the oldest are
    /// dropped and counted.
    pub queue_capacity: usize,
    /// Encode each OpenL3 frame and image once and reuse it in the overlapping windows
    /// (results equal recomputation; ~9× less work at a 1 s hop).
    pub cache: bool,
    /// Encode OpenL3 only every `audio_stride` × 0.1 s and let the frames between reuse
    /// the last encoded one: 1 (exact, default), 2, 5 or 10; must divide the hop. Trades
    /// accuracy for speed on small CPUs (see the README).
    pub audio_stride: u64,
    /// Compute OpenL3's STFT by FFT rather than by the DFT-kernel convolution: faster,
    /// and equal above float32's noise floor.
    pub fast_stft: bool,
    /// OpenL3's convolution stack in `float32` (exact, default), `int8` (CPU only:
    /// about twice as fast, embeddings within a cosine of ~0.9997) or `bfloat16` (CPUs
    /// with bf16 instructions: about twice as fast, within ~0.99999); see the README.
    pub openl3_precision: Precision,
    /// The ResNet image trunk in `float32` (exact, default) or `bfloat16` (CPUs with bf16
    /// instructions: 1.7–3.4× faster per image, features within a cosine of ~0.9999);
    /// see the README.
    pub image_precision: Precision,
    /// A window that waited longer than this (seconds) for the model is stale: dropped
    /// and counted, so latency stays bounded when the hardware cannot keep up.
    pub stale_after_s: f64,
}

/// The arithmetic an encoder's convolutions run in (OpenL3's stack: all three; the
/// ResNet image trunk: float32 or bfloat16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Float32,
    /// Weights per channel and activations per tensor in 8 bits, ranges calibrated on
    /// generated audio (src/model/int8.rs).
    Int8,
    /// Weights and activations rounded to bfloat16, accumulated in float32, on oneDNN's
    /// blocked tensors (src/model/openl3.rs, src/model/resnet.rs); CPUs with bf16
    /// instructions only.
    Bfloat16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Int8 => "int8",
            Precision::Bfloat16 => "bfloat16",
        }
    }

    /// What runs it here: libtorch's quantized engine for int8 (`X86`, `ONEDNN`, …), the
    /// CPU's instructions for bfloat16 (`avx512_bf16`, `amx_bf16`); empty where none.
    pub fn engine(self) -> String {
        match self {
            Precision::Float32 => String::new(),
            Precision::Int8 => crate::model::int8::engine().unwrap_or_default(),
            Precision::Bfloat16 => crate::support::cpu::bf16_instructions()
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// The precision and what runs it, for people.
    pub fn describe(self) -> String {
        match self {
            Precision::Float32 => "float32".into(),
            Precision::Int8 => format!("int8 (libtorch's {} engine)", self.engine()),
            Precision::Bfloat16 => format!("bfloat16 (oneDNN, the CPU's {})", self.engine()),
        }
    }
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            max_batch: 8,
            max_wait_ms: 50,
            queue_capacity: 32,
            cache: true,
            audio_stride: 1,
            fast_stft: false,
            openl3_precision: Precision::Float32,
            image_precision: Precision::Float32,
            stale_after_s: 15.0,
        }
    }
}

impl InferenceConfig {
    /// The inference worker: its own thread owning `model` with `threads` intra-op
    /// threads, taking `windows`, sending results to `results`.
    pub fn build(
        &self,
        model: crate::model::Model,
        threads: usize,
        windows: crate::capture::WindowReceiver,
        results: crossbeam_channel::Sender<super::SceneResult>,
    ) -> std::io::Result<super::Worker> {
        super::spawn_worker(
            super::Engine::new(model, self),
            self,
            threads,
            windows,
            results,
        )
    }

    pub fn validate(&self, problems: &mut Problems) {
        problems.count("inference.max_batch", self.max_batch, 1..=256);
        problems.count("inference.max_wait_ms", self.max_wait_ms, 0..=10_000);
        if ![1, 2, 5, 10].contains(&self.audio_stride) {
            problems.push(
                "inference.audio_stride",
                format!("must be 1, 2, 5 or 10, not {}", self.audio_stride),
            );
        }
        if self.image_precision == Precision::Int8 {
            problems.push(
                "inference.image_precision",
                "must be float32 or bfloat16 (int8 is for OpenL3's stack only)",
            );
        }
        problems.number(
            "inference.stale_after_s",
            self.stale_after_s,
            0.1..=86_400.0,
            " s",
        );
        problems.count(
            "inference.queue_capacity",
            self.queue_capacity,
            1..=MAX_QUEUE,
        );
    }
}
