//! Batches for training, validation and evaluation. A clip is prepared once into the
//! on-disk feature cache; a batch reads its clips' rows from there, so memory holds a
//! batch, not the dataset. Training applies the authors' augmentation — a random
//! horizontal flip of the frames — and, when asked, mixup; random draws come from
//! libtorch's generator, which the trainer seeds per epoch.

use std::sync::Arc;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::dataset::Clip;
use super::features::{Entry, FeatureCache};
use super::metrics::{Scores, score};
use crate::features::image;
use crate::model::Model;

/// A clip ready for a batch: where its features lie in the cache, and its class.
pub(super) struct Prepared {
    /// The recording's OpenL3 embeddings and frames.
    pub features: Arc<Entry>,
    /// The frozen image branch's embeddings of those frames (`--freeze-encoders`).
    pub images: Option<Arc<Entry>>,
    /// The clip's index within the recording.
    pub index: usize,
    pub class: i64,
}

impl Prepared {
    /// A recording's clips, its features computed into `cache` (or found there), and
    /// its frozen image embeddings when `frozen`.
    pub fn recording(
        cache: &mut FeatureCache,
        model: &Model,
        clip: &Clip,
        class: i64,
        frozen: bool,
    ) -> Result<Vec<Prepared>, String> {
        let features = cache.get(model, clip)?;
        let images = if frozen {
            Some(cache.image_embeddings(model, clip, &features)?)
        } else {
            None
        };
        Ok((0..features.clips())
            .map(|index| Prepared {
                features: features.clone(),
                images: images.clone(),
                index,
                class,
            })
            .collect())
    }

    /// OpenL3 embeddings (96, E).
    pub fn audio(&self) -> Result<Tensor, String> {
        self.features.read("audio", self.index)
    }

    /// Frames (10, 224, 224, 3) uint8.
    pub fn frames(&self) -> Result<Tensor, String> {
        self.features.read("frames", self.index)
    }

    /// Frames, or the frozen image embeddings (10, dim) when there are.
    fn pictures(&self) -> Result<Tensor, String> {
        match &self.images {
            Some(images) => images.read("images", self.index),
            None => self.frames(),
        }
    }
}

/// A batch read from the cache.
pub(super) struct Batch {
    /// (B, 96, E) on the model's device.
    audio: Tensor,
    /// Frames (B, 10, 224, 224, 3) uint8 on the CPU, or image embeddings (B, 10, dim) on
    /// the device when the image branch is frozen.
    pictures: Tensor,
    frozen: bool,
    /// (B,) class indices on the device.
    pub labels: Tensor,
}

impl Batch {
    pub fn read(model: &Model, clips: &[&Prepared]) -> Result<Batch, String> {
        let device = model.vs.device();
        let audio = clips
            .iter()
            .map(|c| c.audio())
            .collect::<Result<Vec<_>, _>>()?;
        let pictures = clips
            .iter()
            .map(|c| c.pictures())
            .collect::<Result<Vec<_>, _>>()?;
        let frozen = clips.first().is_some_and(|c| c.images.is_some());
        let pictures = Tensor::stack(&pictures, 0);
        let labels: Vec<i64> = clips.iter().map(|c| c.class).collect();
        Ok(Batch {
            audio: Tensor::stack(&audio, 0).to_device(device),
            pictures: if frozen {
                pictures.to_device(device)
            } else {
                pictures
            },
            frozen,
            labels: Tensor::from_slice(&labels).to_device(device),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }
}

/// `--flip`: the random horizontal flip of the frames in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Flip {
    /// Half the clips mirrored, all ten frames of a clip alike (a mirrored scene).
    Clip,
    /// Each frame mirrored or not on its own, as the authors' dataloader does
    /// (`RandomHorizontalFlip` per image).
    Frame,
    Off,
}

/// Training-time changes to a batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Augment {
    pub flip: Flip,
    /// Mixup's α: 0 is off.
    pub mixup: f64,
}

/// Frames (B, 10, H, W, 3) mirrored per clip or per frame, half of them on average.
fn flip(frames: &Tensor, how: Flip) -> Tensor {
    let size = frames.size();
    let mask_shape = match how {
        Flip::Off => return frames.shallow_clone(),
        Flip::Clip => [size[0], 1, 1, 1, 1],
        Flip::Frame => [size[0], size[1], 1, 1, 1],
    };
    let mirror = Tensor::rand(mask_shape, (Kind::Float, Device::Cpu)).lt(0.5);
    image::flip_horizontally(frames).where_self(&mirror, frames)
}

/// λ ~ Beta(α, α), from two Gamma(α) draws.
fn beta(alpha: f64) -> f64 {
    let g = Tensor::full([2], alpha, (Kind::Float, Device::Cpu)).internal_standard_gamma();
    let (a, b) = (g.double_value(&[0]), g.double_value(&[1]));
    if a + b > 0.0 { a / (a + b) } else { 0.5 }
}

/// The logits of a batch as the model sees it (eval or train mode), no augmentation.
pub(super) fn logits(model: &Model, batch: &Batch, train: bool) -> Tensor {
    forward(
        model,
        &batch.audio,
        &inputs(model, batch, Flip::Off),
        batch.frozen,
        train,
    )
}

/// Images normalised on the device, or the frozen embeddings as they are.
fn inputs(model: &Model, batch: &Batch, how: Flip) -> Tensor {
    if batch.frozen {
        batch.pictures.shallow_clone()
    } else {
        image::images(&flip(&batch.pictures, how), model.vs.device())
    }
}

fn forward(model: &Model, audio: &Tensor, pictures: &Tensor, frozen: bool, train: bool) -> Tensor {
    if frozen {
        model.net.head_t(audio, pictures, train)
    } else {
        model.net.forward_t(audio, pictures, train)
    }
}

/// A training step's logits and loss. With mixup each clip is blended with another of the
/// batch — OpenL3 embeddings and pictures by the same λ — and the loss is blended alike.
/// The flip does not reach frozen image embeddings (they were computed once, unflipped).
pub(super) fn training_loss(model: &Model, batch: &Batch, augment: Augment) -> (Tensor, Tensor) {
    let pictures = inputs(model, batch, augment.flip);
    if augment.mixup <= 0.0 {
        let logits = forward(model, &batch.audio, &pictures, batch.frozen, true);
        let loss = logits.cross_entropy_for_logits(&batch.labels);
        return (logits, loss);
    }
    let lambda = beta(augment.mixup);
    let order = Tensor::randperm(batch.len() as i64, (Kind::Int64, Device::Cpu))
        .to_device(model.vs.device());
    let blend = |x: &Tensor| x * lambda + x.index_select(0, &order) * (1.0 - lambda);
    let logits = forward(
        model,
        &blend(&batch.audio),
        &blend(&pictures),
        batch.frozen,
        true,
    );
    let other = batch.labels.index_select(0, &order);
    let loss = logits.cross_entropy_for_logits(&batch.labels) * lambda
        + logits.cross_entropy_for_logits(&other) * (1.0 - lambda);
    (logits, loss)
}

/// Scores of the model (eval mode) on prepared clips, and the probabilities; clips are
/// read 16 at a time.
pub(super) fn evaluate_prepared(
    model: &Model,
    clips: &[Prepared],
    classes: &[String],
) -> Result<(Scores, Vec<Vec<f32>>), String> {
    let mut probabilities = Vec::new();
    let mut truth = Vec::new();
    tch::no_grad(|| {
        for chunk in clips.chunks(16) {
            let batch = Batch::read(model, &chunk.iter().collect::<Vec<_>>())?;
            let p = logits(model, &batch, false)
                .softmax(-1, Kind::Float)
                .to_device(Device::Cpu);
            for i in 0..batch.len() as i64 {
                probabilities.push(Vec::<f32>::try_from(p.get(i)).unwrap_or_default());
            }
            truth.extend(chunk.iter().map(|c| c.class as usize));
        }
        Ok::<(), String>(())
    })?;
    Ok((score(&probabilities, &truth, classes), probabilities))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (B, 10, 2, 2, 3) frames whose left column is 1 and right column 2.
    fn frames(b: i64) -> Tensor {
        let column = Tensor::from_slice(&[1u8, 2]).view([1, 1, 1, 2, 1]);
        column.expand([b, 10, 2, 2, 3], false).contiguous()
    }

    fn mirrored(f: &Tensor) -> Tensor {
        // Per (clip, frame): whether the left column now holds 2.
        f.select(2, 0).select(2, 0).select(2, 0).eq(2)
    }

    #[test]
    fn the_flip_mirrors_whole_clips_or_single_frames() {
        tch::manual_seed(3);
        let clip = mirrored(&flip(&frames(64), Flip::Clip));
        // Every frame of a clip alike, and some clips of each kind.
        assert!(
            clip.eq_tensor(&clip.select(1, 0).unsqueeze(1))
                .all()
                .int64_value(&[])
                == 1
        );
        let n = clip.select(1, 0).sum(Kind::Int64).int64_value(&[]);
        assert!((16..=48).contains(&n), "{n} of 64 clips mirrored");
        let frame = mirrored(&flip(&frames(64), Flip::Frame));
        let n = frame.sum(Kind::Int64).int64_value(&[]);
        assert!((220..=420).contains(&n), "{n} of 640 frames mirrored");
        let differs = frame.ne_tensor(&frame.select(1, 0).unsqueeze(1)).any();
        assert_eq!(
            differs.int64_value(&[]),
            1,
            "frames of a clip flip on their own"
        );
        assert!(flip(&frames(4), Flip::Off).equal(&frames(4)));
    }

    #[test]
    fn mixup_weights_follow_a_beta_distribution() {
        tch::manual_seed(5);
        let draws: Vec<f64> = (0..2000).map(|_| beta(0.4)).collect();
        assert!(draws.iter().all(|l| (0.0..=1.0).contains(l)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.03, "mean {mean}");
        // Beta(α, α) has variance 1 / (4 (2α + 1)): 0.139 for α = 0.4 (U-shaped).
        let var = draws.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((var / 0.1389 - 1.0).abs() < 0.1, "variance {var}");
    }
}
