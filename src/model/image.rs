//! The image branch (the authors' `VideoNet`): a fine-tuned ResNet per frame, average +
//! max pooling summed, then Linear → ReLU → BatchNorm1d to `dim`. Every step works on one
//! image at a time in eval mode, so a frame's embedding can be cached.

use tch::{Tensor, nn};

use super::init;
use super::resnet::ResNet;
use super::spec::ModelSpec;

#[derive(Debug)]
pub struct VideoNet {
    resnet: ResNet,
    fc: nn::Linear,
    bn: nn::BatchNorm,
}

impl VideoNet {
    pub fn new(p: &nn::Path, spec: &ModelSpec) -> VideoNet {
        VideoNet {
            resnet: ResNet::new(&(p / "resnet"), &spec.backbone),
            fc: init::linear(p / "fc" / 0, spec.backbone.features(), spec.dim),
            bn: nn::batch_norm1d(p / "fc" / 2, spec.dim, init::batch_norm(1e-5, 0.1)),
        }
    }

    /// Run the ResNet trunk on oneDNN's blocked tensors in eval mode on the CPU (the
    /// default where libtorch has oneDNN). Returns whether it is in use.
    pub fn set_blocked(&self, on: bool) -> bool {
        self.resnet.set_blocked(on)
    }

    pub fn uses_blocked(&self) -> bool {
        self.resnet.uses_blocked()
    }

    /// Run the ResNet trunk in bfloat16 in eval mode on the CPU (opt-in; CPUs with bf16
    /// instructions, blocked layout). Returns whether it is in use, or why it cannot be.
    pub fn set_bf16(&self, on: bool) -> Result<bool, super::Bf16Error> {
        self.resnet.set_bf16(on)
    }

    pub fn uses_bf16(&self) -> bool {
        self.resnet.uses_bf16()
    }

    /// (N, 3, 224, 224) normalised images → (N, dim).
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Tensor {
        let maps = self.resnet.forward_t(images, train);
        let pooled = maps.adaptive_avg_pool2d([1, 1]) + maps.adaptive_max_pool2d([1, 1]).0;
        pooled
            .flatten(1, -1)
            .apply(&self.fc)
            .relu()
            .apply_t(&self.bn, train)
    }
}
