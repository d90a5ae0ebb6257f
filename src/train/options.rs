//! `avscene train`'s settings: the authors' recipe as defaults, each an option, checked
//! before anything starts.

use std::path::PathBuf;

use serde::Serialize;
use tch::Device;

use super::batches::Flip;
use super::trainer::TrainError;

/// `avscene train` settings (its command-line options).
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct TrainOptions {
    /// Dataset: TAU Urban Audio-Visual Scenes 2021 layout, or one folder per label
    /// (DIR/<label>/ media files, as `avscene record` writes).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Where checkpoints, the best model and the training log go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Train up to this epoch (with --resume: the total, not more).
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    /// Architecture of the new model: full (the paper's) or small [default: full].
    #[arg(long, conflicts_with = "init")]
    pub profile: Option<String>,
    /// Fine-tune: start from this model file (architecture and weights). When its labels
    /// differ from the dataset's, the classifier is rebuilt for the new ones (labels it
    /// knows keep their weights); the rest is kept.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Continue from OUT/last.safetensors and OUT/optimizer.safetensors.
    #[arg(long)]
    pub resume: bool,
    /// Seeds initialisation, shuffling, augmentation and the validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Decoupled weight decay (AdamW: weights shrink by lr × this each step). The
    /// authors' Adam has none.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clips per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Multiply the learning rate by --lr-decay at every N-th epoch (20: at epochs 20 and
    /// 40, as the authors' configs; 0: constant).
    #[arg(long, default_value_t = 20)]
    pub lr_step: usize,
    /// The factor --lr-step applies to the learning rate, in (0, 1].
    #[arg(long, default_value_t = 0.1)]
    pub lr_decay: f64,
    /// Random horizontal flip of the training frames: per clip, per frame (the
    /// authors' dataloader), or off. Frozen image embeddings are never flipped.
    #[arg(long, value_enum, default_value_t = Flip::Clip)]
    pub flip: Flip,
    /// Mixup across clips with Beta(α, α), applied to the OpenL3 embeddings and the
    /// frames alike (0: off, the authors' recipe; 0.2–0.4 is usual).
    #[arg(long, value_name = "ALPHA", default_value_t = 0.0)]
    pub mixup: f64,
    /// Freeze the encoders: the image branch keeps its weights (OpenL3 always does) and
    /// only the audio branch, fusion and classifier train, on embeddings computed once —
    /// minutes on a small CPU. Best with --init.
    #[arg(long = "freeze-encoders", visible_alias = "freeze-image")]
    pub freeze_image: bool,
    /// Feature cache directory (default OUT/feature-cache).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Set from `--device` once resolved.
    #[serde(skip)]
    #[arg(skip = Device::Cpu)]
    pub device: Device,
}

impl TrainOptions {
    /// Every number in range before anything starts.
    pub(super) fn check(&self) -> Result<(), TrainError> {
        let bad = |what: &str, why: String| Err(TrainError::Options(format!("{what}: {why}")));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "--lr",
                format!("must be a positive number, not {}", self.lr),
            );
        }
        if !(self.weight_decay.is_finite() && (0.0..1.0).contains(&self.weight_decay)) {
            return bad(
                "--weight-decay",
                format!("must be in [0, 1), not {}", self.weight_decay),
            );
        }
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return bad(
                "--lr-decay",
                format!("must be in (0, 1], not {}", self.lr_decay),
            );
        }
        if !(self.mixup.is_finite() && self.mixup >= 0.0) {
            return bad(
                "--mixup",
                format!("must be 0 (off) or a positive α, not {}", self.mixup),
            );
        }
        if self.batch == 0 {
            return bad("--batch", "must be at least 1".into());
        }
        Ok(())
    }

    /// The learning rate of a (1-based) epoch: the authors decay it at the start of every
    /// `lr_step`-th epoch.
    pub(super) fn lr_at(&self, epoch: usize) -> f64 {
        let steps = epoch.checked_div(self.lr_step).unwrap_or(0);
        self.lr * self.lr_decay.powi(steps as i32)
    }
}
