//! The architecture of a model, recorded in every model file: class labels and the sizes
//! of each part. `full` is the paper's model; `small` keeps its structure with narrow
//! layers (CPU demos and tests).

use serde::{Deserialize, Serialize};

/// OpenL3 mel256 embeddings are 512-d; the audio branch's strides are built for that width.
pub const OPENL3_EMBEDDING: i64 = 512;

/// The ten TAU Urban Audio-Visual Scenes 2021 classes, in the model's output order
/// (alphabetical, as the dataset baseline and the authors' code).
pub const TAU_CLASSES: [&str; 10] = [
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
];

/// Residual block type of the image backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    /// ResNet18/34's two 3×3 convolutions.
    Basic,
    /// ResNet50's 1×1-3×3-1×1 bottleneck, stride on the 3×3 (v1.5, torchvision).
    Bottleneck,
}

/// The image backbone: a torchvision-layout ResNet trunk up to `layer4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backbone {
    pub block: Block,
    /// Blocks per stage (ResNet50: 3, 4, 6, 3).
    pub layers: [i64; 4],
    /// Channels of the stem and first stage (64 in torchvision).
    pub width: i64,
}

impl Backbone {
    pub const RESNET50: Backbone = Backbone {
        block: Block::Bottleneck,
        layers: [3, 4, 6, 3],
        width: 64,
    };

    /// Channels of `layer4`'s output (2048 for ResNet50).
    pub fn features(&self) -> i64 {
        let expansion = match self.block {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        };
        self.width * 8 * expansion
    }
}

/// Everything that decides the model's tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Name of the profile it was built from (informational).
    pub profile: String,
    /// Output classes in index order.
    pub classes: Vec<String>,
    /// Width of each stream's per-frame embedding (256 in the paper).
    pub dim: i64,
    /// OpenL3 convolution channels per block (64, 128, 256, 512); the last is also the
    /// embedding layer's input.
    pub openl3_channels: [i64; 4],
    /// Audio branch convolution channels before the last (64, 128, 256; the last is `dim`).
    pub audio_channels: [i64; 3],
    /// Heads of the audio self-attention (d_k = 512 / heads).
    pub audio_heads: i64,
    /// Feed-forward width of the audio self-attention.
    pub audio_d_ff: i64,
    /// Heads of the fusion self-attention (d_k = 2·dim / heads).
    pub fusion_heads: i64,
    /// Feed-forward width of the fusion self-attention.
    pub fusion_d_ff: i64,
    pub backbone: Backbone,
    /// Dropout before the classifier.
    pub dropout: f64,
}

impl ModelSpec {
    /// The paper's model: OpenL3 mel256/env/512, ResNet50, dim 256, ten TAU classes.
    pub fn full() -> ModelSpec {
        ModelSpec {
            profile: "full".into(),
            classes: TAU_CLASSES.iter().map(|c| c.to_string()).collect(),
            dim: 256,
            openl3_channels: [64, 128, 256, 512],
            audio_channels: [64, 128, 256],
            audio_heads: 8,
            audio_d_ff: 512,
            fusion_heads: 16,
            fusion_d_ff: 512,
            backbone: Backbone::RESNET50,
            dropout: 0.5,
        }
    }

    /// The same structure, narrow: a 4-stage basic-block ResNet of width 16, OpenL3 with an
    /// eighth of the channels, dim 64. Its labels are as good as its training; it exists so
    /// CPU demos and tests run in seconds.
    pub fn small() -> ModelSpec {
        ModelSpec {
            profile: "small".into(),
            classes: TAU_CLASSES.iter().map(|c| c.to_string()).collect(),
            dim: 64,
            openl3_channels: [8, 16, 32, 64],
            audio_channels: [16, 32, 64],
            audio_heads: 8,
            audio_d_ff: 128,
            fusion_heads: 4,
            fusion_d_ff: 128,
            backbone: Backbone {
                block: Block::Basic,
                layers: [1, 1, 1, 1],
                width: 16,
            },
            dropout: 0.5,
        }
    }

    /// A named profile (`full`, `small`).
    pub fn profile(name: &str) -> Option<ModelSpec> {
        match name {
            "full" => Some(ModelSpec::full()),
            "small" => Some(ModelSpec::small()),
            _ => None,
        }
    }

    pub fn num_classes(&self) -> i64 {
        self.classes.len() as i64
    }

    /// Reasons this spec cannot be built, if any (a model file's metadata is user input).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.classes.len() < 2 {
            p.push(format!(
                "needs at least 2 classes, has {}",
                self.classes.len()
            ));
        }
        let mut sorted = self.classes.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.classes.len() {
            p.push("class labels are not unique".into());
        }
        if self.classes.iter().any(|c| c.is_empty()) {
            p.push("a class label is empty".into());
        }
        let positive = self.dim > 0
            && self.openl3_channels.iter().all(|&c| c > 0)
            && self.audio_channels.iter().all(|&c| c > 0)
            && self.audio_d_ff > 0
            && self.fusion_d_ff > 0
            && self.backbone.width > 0
            && self.backbone.layers.iter().all(|&l| l > 0);
        if !positive {
            p.push("every size must be positive".into());
        }
        if self.audio_heads <= 0 || OPENL3_EMBEDDING % self.audio_heads != 0 {
            p.push(format!(
                "audio_heads {} must divide {OPENL3_EMBEDDING}",
                self.audio_heads
            ));
        }
        if self.fusion_heads <= 0 || (2 * self.dim) % self.fusion_heads != 0 {
            p.push(format!(
                "fusion_heads {} must divide 2·dim = {}",
                self.fusion_heads,
                2 * self.dim
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            p.push(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        p
    }
}
