//! The dual-stream audio-visual scene model (Hou et al., DCASE 2021 Task 1B), as in the
//! authors' code: an audio branch over OpenL3 embeddings, a fine-tuned ResNet image
//! branch, self-attention fusion, a per-frame classifier pooled by mean + max. One
//! definition serves training and live inference.
//!
//! Parameter paths mirror the PyTorch modules: `openl3.*` (torchopenl3), `audio_net.*`,
//! `video.*` (with torchvision's ResNet names under `video.resnet`), `encoder.*`,
//! `classifier.1`.

mod attention;
mod audio;
mod blocked;
mod config;
mod file;
pub mod flops;
mod image;
pub mod import;
mod init;
pub mod int8;

mod openl3;
pub mod pretrained;
pub mod pth;
mod resnet;
mod spec;

use tch::{Device, Tensor, nn};

pub use attention::EncoderLayer;
pub use audio::AudioNet;
pub use blocked::Bf16Error;
pub use config::{DeviceSpec, ModelConfig, PROFILES};
pub use file::{FORMAT, FORMAT_VERSION, ModelFileError, Provenance};
pub use image::VideoNet;
pub use openl3::OpenL3;
pub use spec::{Backbone, Block, ModelSpec, OPENL3_EMBEDDING, TAU_CLASSES};

use crate::features::{AUDIO_CHUNK, FeatureSpec, IMAGE_CHUNK};

/// The network: every part, built under one `nn::Path`.
#[derive(Debug)]
pub struct SceneNet {
    pub openl3: OpenL3,
    pub audio_net: AudioNet,
    pub video: VideoNet,
    encoder: EncoderLayer,
    classifier: nn::Linear,
    dropout: f64,
}

impl SceneNet {
    pub fn new(root: &nn::Path, spec: &ModelSpec, features: &FeatureSpec) -> SceneNet {
        SceneNet {
            openl3: OpenL3::new(&(root / "openl3"), spec, features),
            audio_net: AudioNet::new(&(root / "audio_net"), spec),
            video: VideoNet::new(&(root / "video"), spec),
            encoder: EncoderLayer::new(
                &(root / "encoder"),
                2 * spec.dim,
                spec.fusion_d_ff,
                spec.fusion_heads,
            ),
            classifier: init::linear(root / "classifier" / 1, 2 * spec.dim, spec.num_classes()),
            dropout: spec.dropout,
        }
    }

    /// Run both encoders' eval-mode convolutions (OpenL3's stack, the ResNet trunk) on
    /// oneDNN's blocked tensors on the CPU — the default where libtorch has oneDNN — or,
    /// off, in the plain NCHW layout. Returns whether the blocked layout is in use.
    pub fn set_blocked(&self, on: bool) -> bool {
        let audio = self.openl3.set_blocked(on);
        self.video.set_blocked(on) && audio
    }

    /// (N, 48000) audio frames → (N, 512) OpenL3 embeddings, at most [`AUDIO_CHUNK`] frames
    /// per forward call, the chunks as even as possible (OpenL3 is frozen: always eval
    /// mode, per frame).
    pub fn embed_audio_frames(&self, frames: &Tensor) -> Tensor {
        let chunks: Vec<Tensor> = audio_chunks(frames)
            .iter()
            .map(|c| self.openl3.forward(c))
            .collect();
        Tensor::cat(&chunks, 0)
    }

    /// (N, 3, 224, 224) normalised images → (N, dim) image-branch embeddings. In eval
    /// mode at most [`IMAGE_CHUNK`] images per call, chunked evenly (each image is
    /// independent); in training the whole batch at once, as its batch norms need.
    pub fn embed_images(&self, images: &Tensor, train: bool) -> Tensor {
        if train {
            return self.video.forward_t(images, true);
        }
        let chunks: Vec<Tensor> = images
            .split_with_sizes(even_chunks(images.size()[0], IMAGE_CHUNK), 0)
            .iter()
            .map(|c| self.video.forward_t(c, false))
            .collect();
        Tensor::cat(&chunks, 0)
    }

    /// The part after the per-frame encoders: (B, 96, 512) OpenL3 embeddings and
    /// (B, 10, dim) image embeddings → (B, classes) logits (mean + max over the 10 frames).
    pub fn head_t(
        &self,
        audio_embeddings: &Tensor,
        image_embeddings: &Tensor,
        train: bool,
    ) -> Tensor {
        let audio = self.audio_net.forward_t(audio_embeddings, train);
        let mixed = Tensor::cat(&[audio, image_embeddings.shallow_clone()], -1);
        let per_frame = self
            .encoder
            .forward(&mixed)
            .dropout(self.dropout, train)
            .apply(&self.classifier);
        per_frame.mean_dim(1, false, per_frame.kind()) + per_frame.amax([1], false)
    }

    /// Training path: OpenL3 embeddings (precomputed, OpenL3 stays frozen) and
    /// (B, 10, 3, 224, 224) images → logits; the image branch is fine-tuned.
    pub fn forward_t(&self, audio_embeddings: &Tensor, images: &Tensor, train: bool) -> Tensor {
        let size = images.size();
        let (b, n) = (size[0], size[1]);
        let flat = images.view([b * n, size[2], size[3], size[4]]);
        let image_embeddings = self.embed_images(&flat, train).view([b, n, -1]);
        self.head_t(audio_embeddings, &image_embeddings, train)
    }

    /// From scratch, eval mode: (B, 96, 48000) audio frames and (B, 10, 3, 224, 224)
    /// images → (B, classes) logits.
    pub fn classify_from_scratch(&self, audio_frames: &Tensor, images: &Tensor) -> Tensor {
        let size = audio_frames.size();
        let embeddings = self
            .embed_audio_frames(&audio_frames.view([size[0] * size[1], size[2]]))
            .view([size[0], size[1], -1]);
        self.forward_t(&embeddings, images, false)
    }
}

/// A model ready to run: its variables, network, architecture and where it came from.
pub struct Model {
    pub vs: nn::VarStore,
    pub net: SceneNet,
    pub spec: ModelSpec,
    pub features: FeatureSpec,
    pub provenance: Provenance,
    /// Short identifier published with results: profile + a hash of the weights.
    pub id: String,
}

impl Model {
    /// A freshly initialised model (random weights; the front-end buffers computed).
    pub fn fresh(spec: ModelSpec, device: Device) -> Model {
        let features = FeatureSpec::default();
        let vs = nn::VarStore::new(device);
        let net = SceneNet::new(&vs.root(), &spec, &features);
        let id = format!("{}-untrained", spec.profile);
        Model {
            vs,
            net,
            spec,
            features,
            provenance: Provenance::new("random-init"),
            id,
        }
    }

    /// This model under another label set, for fine-tuning: every weight is kept but the
    /// classifier's, whose rows follow their labels (a label the model knows keeps its
    /// row, a new one gets a fresh row). Returns the model and how many labels kept a row.
    pub fn relabel(&self, classes: &[String]) -> (Model, usize) {
        let mut spec = self.spec.clone();
        spec.classes = classes.to_vec();
        let model = Model::fresh(spec, self.vs.device());
        let old = self.vs.variables();
        let rows: Vec<(i64, i64)> = classes
            .iter()
            .enumerate()
            .filter_map(|(i, label)| {
                let j = self.spec.classes.iter().position(|c| c == label)?;
                Some((i as i64, j as i64))
            })
            .collect();
        tch::no_grad(|| {
            for (name, mut var) in model.vs.variables() {
                let Some(source) = old.get(&name) else {
                    continue;
                };
                if name.starts_with("classifier.") {
                    for &(i, j) in &rows {
                        var.get(i).copy_(&source.get(j));
                    }
                } else {
                    var.copy_(source);
                }
            }
        });
        (model, rows.len())
    }

    /// Trainable parameters per part, in the order openl3, audio branch, image branch,
    /// fusion (with the classifier).
    pub fn parameter_counts(&self) -> PartCounts {
        let mut counts = PartCounts::default();
        for (name, var) in self.vs.variables() {
            if !var.requires_grad() {
                continue;
            }
            let n = var.numel() as i64;
            match name.split('.').next() {
                Some("openl3") => counts.openl3 += n,
                Some("audio_net") => counts.audio_branch += n,
                Some("video") => counts.image_branch += n,
                _ => counts.fusion += n,
            }
        }
        counts
    }
}

/// Trainable parameter counts of each part.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PartCounts {
    pub openl3: i64,
    pub audio_branch: i64,
    pub image_branch: i64,
    pub fusion: i64,
}

impl PartCounts {
    /// Everything but OpenL3, which is a frozen feature extractor.
    pub fn total_without_openl3(&self) -> i64 {
        self.audio_branch + self.image_branch + self.fusion
    }
}

/// (N, 48000) audio frames in the chunks OpenL3 runs them in: at most [`AUDIO_CHUNK`],
/// as even as possible.
pub fn audio_chunks(frames: &Tensor) -> Vec<Tensor> {
    frames.split_with_sizes(even_chunks(frames.size()[0], AUDIO_CHUNK), 0)
}

/// `n` split into the fewest chunks of at most `max`, as even as possible (10 → 5 + 5, not
/// 8 + 2: a 2-frame tail keeps the CPU's threads half idle).
fn even_chunks(n: i64, max: i64) -> Vec<i64> {
    let count = ((n + max - 1) / max).max(1);
    (0..count)
        .map(|i| n / count + i64::from(i < n % count))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::even_chunks;

    #[test]
    fn even_chunks_cover_n_in_the_fewest_near_equal_pieces() {
        assert_eq!(even_chunks(10, 8), [5, 5]);
        assert_eq!(even_chunks(96, 8), [8; 12]);
        assert_eq!(even_chunks(17, 8), [6, 6, 5]);
        assert_eq!(even_chunks(3, 8), [3]);
        for n in 1..100 {
            let chunks = even_chunks(n, 8);
            assert_eq!(chunks.iter().sum::<i64>(), n);
            assert_eq!(chunks.len() as i64, (n + 7) / 8);
            let (lo, hi) = (chunks.iter().min().unwrap(), chunks.iter().max().unwrap());
            assert!(*hi <= 8 && hi - lo <= 1, "{n}: {chunks:?}");
        }
    }
}
