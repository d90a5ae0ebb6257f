//! The audio branch (the authors' `AudioNet_v2_pooling`): self-attention over the 96
//! OpenL3 frames, then four strided convolutions that fold them into 10 frames of `dim`.
//! (B, 96, 512) → (B, 10, dim).

use tch::{Tensor, nn};

use super::attention::EncoderLayer;
use super::init;
use super::spec::{ModelSpec, OPENL3_EMBEDDING};

/// One `convN` stage: `convN.0` Conv2d → `convN.1` BatchNorm2d → ReLU (→ MaxPool2d(2, 1)).
#[derive(Debug)]
struct ConvStage {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    pool: bool,
}

impl ConvStage {
    fn new(
        p: nn::Path,
        c_in: i64,
        c_out: i64,
        kernel_w: i64,
        stride: [i64; 2],
        pool: bool,
    ) -> ConvStage {
        let config = nn::ConvConfigND::<[i64; 2]> {
            stride,
            ws_init: init::WEIGHT,
            bs_init: init::bias(c_in * kernel_w),
            ..Default::default()
        };
        ConvStage {
            conv: nn::conv(&p / 0, c_in, c_out, [1, kernel_w], config),
            bn: nn::batch_norm2d(&p / 1, c_out, init::batch_norm(1e-5, 0.1)),
            pool,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs.apply(&self.conv).apply_t(&self.bn, train).relu();
        if self.pool {
            ys.max_pool2d([2, 2], [1, 1], [0, 0], [1, 1], false)
        } else {
            ys
        }
    }
}

#[derive(Debug)]
pub struct AudioNet {
    encoder1: EncoderLayer,
    stages: [ConvStage; 4],
}

impl AudioNet {
    pub fn new(p: &nn::Path, spec: &ModelSpec) -> AudioNet {
        let [c1, c2, c3] = spec.audio_channels;
        AudioNet {
            encoder1: EncoderLayer::new(
                &(p / "encoder1"),
                OPENL3_EMBEDDING,
                spec.audio_d_ff,
                spec.audio_heads,
            ),
            stages: [
                ConvStage::new(p / "conv1", 1, c1, 7, [3, 4], true),
                ConvStage::new(p / "conv2", c1, c2, 5, [3, 3], true),
                ConvStage::new(p / "conv3", c2, c3, 5, [1, 3], false),
                ConvStage::new(p / "conv4", c3, spec.dim, 5, [1, 3], false),
            ],
        }
    }

    /// The self-attention layer over the 96 frames.
    pub fn encoder1(&self) -> &EncoderLayer {
        &self.encoder1
    }

    /// The output of each stage: attention (B, 96, 512), then the four convolution
    /// stages ((B, 64, 31, 126), (B, 128, 10, 40), (B, 256, 10, 12), (B, dim, 10, 3) at
    /// full size).
    pub fn stages_t(&self, embeddings: &Tensor, train: bool) -> Vec<Tensor> {
        let mut outputs = vec![self.encoder1.forward(embeddings)];
        let mut xs = outputs[0].unsqueeze(1);
        for stage in &self.stages {
            xs = stage.forward_t(&xs, train);
            outputs.push(xs.shallow_clone());
        }
        outputs
    }

    /// (B, 96, 512) OpenL3 embeddings → (B, 10, dim): the last stage averaged over its
    /// width.
    pub fn forward_t(&self, embeddings: &Tensor, train: bool) -> Tensor {
        let mut xs = self.encoder1.forward(embeddings).unsqueeze(1);
        for stage in &self.stages {
            xs = stage.forward_t(&xs, train);
        }
        xs.mean_dim(-1, false, xs.kind()).transpose(1, 2)
    }
}
