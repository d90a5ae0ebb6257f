//! A ResNet trunk in torchvision's layout and parameter names (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer2.0.downsample.0`, …), up to `layer4`: ImageNet weights from
//! torchvision load 1:1 (without `fc`). Bottleneck blocks stride on the 3×3 (v1.5).
//! In eval mode on the CPU it runs on oneDNN's blocked tensors, batch norms folded
//! (`super::blocked`); training keeps the plain layout.

use tch::{Tensor, nn};

use super::blocked::{Derived, LayoutSwitch, PackedConv, conv_bn_variables, version_key};
use super::init;
use super::spec::{Backbone, Block};

#[derive(Debug)]
struct ResidualBlock {
    /// (conv, its batch norm, stride)
    convs: Vec<(nn::Conv2D, nn::BatchNorm, i64)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm, i64)>,
}

/// A block packed for the blocked layout.
#[derive(Debug)]
struct PackedBlock {
    convs: Vec<PackedConv>,
    downsample: Option<PackedConv>,
}

/// The trunk packed for the blocked layout.
#[derive(Debug)]
struct PackedTrunk {
    conv1: PackedConv,
    blocks: Vec<PackedBlock>,
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ws_init: init::RESNET_CONV,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, config)
}

/// torchvision's batch-norm epsilon.
const BN_EPS: f64 = 1e-5;

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, init::batch_norm(BN_EPS, 0.1))
}

/// A convolution's padding, from its kernel: torchvision pads k / 2.
fn padding(conv: &nn::Conv2D) -> i64 {
    conv.ws.size()[2] / 2
}

impl ResidualBlock {
    fn new(
        p: &nn::Path,
        block: Block,
        c_in: i64,
        planes: i64,
        stride: i64,
    ) -> (ResidualBlock, i64) {
        let (shapes, c_out): (Vec<(i64, i64, i64, i64)>, i64) = match block {
            Block::Basic => (
                vec![(c_in, planes, 3, stride), (planes, planes, 3, 1)],
                planes,
            ),
            Block::Bottleneck => (
                vec![
                    (c_in, planes, 1, 1),
                    (planes, planes, 3, stride),
                    (planes, planes * 4, 1, 1),
                ],
                planes * 4,
            ),
        };
        let convs = shapes
            .into_iter()
            .enumerate()
            .map(|(i, (ci, co, k, s))| {
                (
                    conv(p / format!("conv{}", i + 1), ci, co, k, s),
                    bn(p / format!("bn{}", i + 1), co),
                    s,
                )
            })
            .collect();
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            (
                conv(p / "downsample" / 0, c_in, c_out, 1, stride),
                bn(p / "downsample" / 1, c_out),
                stride,
            )
        });
        (ResidualBlock { convs, downsample }, c_out)
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, (conv, bn, _)) in self.convs.iter().enumerate() {
            ys = ys.apply(conv).apply_t(bn, train);
            if i != last {
                ys = ys.relu();
            }
        }
        let identity = match &self.downsample {
            Some((conv, bn, _)) => xs.apply(conv).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        (ys + identity).relu()
    }

    fn pack(&self) -> PackedBlock {
        let pack = |(conv, bn, stride): &(nn::Conv2D, nn::BatchNorm, i64)| {
            PackedConv::folded(conv, bn, BN_EPS, *stride, padding(conv))
        };
        PackedBlock {
            convs: self.convs.iter().map(pack).collect(),
            downsample: self.downsample.as_ref().map(pack),
        }
    }

    fn variables(&self) -> impl Iterator<Item = &Tensor> {
        self.convs
            .iter()
            .chain(self.downsample.iter())
            .flat_map(|(conv, bn, _)| conv_bn_variables(conv, bn))
    }
}

impl PackedBlock {
    /// The same block on blocked tensors.
    fn forward(&self, xs: &Tensor) -> Tensor {
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, conv) in self.convs.iter().enumerate() {
            ys = conv.forward(&ys);
            if i != last {
                ys = ys.relu_();
            }
        }
        let identity = match &self.downsample {
            Some(conv) => conv.forward(xs),
            None => xs.shallow_clone(),
        };
        (ys + identity).relu_()
    }
}

#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<ResidualBlock>,
    /// In eval mode on the CPU, run on oneDNN's blocked tensors (the default where
    /// libtorch has oneDNN); equal to the plain path within float32 rounding.
    blocked: LayoutSwitch,
    /// The packed trunk, repacked whenever a variable was written since.
    packed: Derived<PackedTrunk>,
}

impl ResNet {
    pub fn new(p: &nn::Path, backbone: &Backbone) -> ResNet {
        let w = backbone.width;
        let mut c_in = w;
        let mut blocks = Vec::new();
        for (stage, &count) in backbone.layers.iter().enumerate() {
            let planes = w << stage;
            let layer = p / format!("layer{}", stage + 1);
            for i in 0..count {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let (block, c_out) =
                    ResidualBlock::new(&(&layer / i), backbone.block, c_in, planes, stride);
                blocks.push(block);
                c_in = c_out;
            }
        }
        ResNet {
            conv1: conv(p / "conv1", 3, w, 7, 2),
            bn1: bn(p / "bn1", w),
            blocks,
            blocked: LayoutSwitch::new(),
            packed: Derived::new(),
        }
    }

    /// Use oneDNN's blocked layout in eval mode on the CPU; off, the plain NCHW path.
    /// Returns whether it is in use.
    pub fn set_blocked(&self, on: bool) -> bool {
        self.blocked.set(on)
    }

    /// Whether eval mode on the CPU runs on oneDNN's blocked tensors.
    pub fn uses_blocked(&self) -> bool {
        self.blocked.is_on()
    }

    /// (N, 3, H, W) → (N, features, H/32, W/32).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if !train && xs.device() == tch::Device::Cpu && self.uses_blocked() {
            return self.forward_blocked(xs);
        }
        let mut ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        ys
    }

    /// The eval-mode trunk on blocked tensors (no gradient), packed on first use and
    /// again after any of its variables changed.
    fn forward_blocked(&self, xs: &Tensor) -> Tensor {
        let pack = || PackedTrunk {
            conv1: PackedConv::folded(&self.conv1, &self.bn1, BN_EPS, 2, 3),
            blocks: self.blocks.iter().map(ResidualBlock::pack).collect(),
        };
        self.packed.with(self.version_key(), pack, |packed| {
            tch::no_grad(|| {
                let mut ys = packed.conv1.forward(&xs.to_mkldnn()).relu_().max_pool2d(
                    [3, 3],
                    [2, 2],
                    [1, 1],
                    [1, 1],
                    false,
                );
                for block in &packed.blocks {
                    ys = block.forward(&ys);
                }
                ys.to_dense(None, false)
            })
        })
    }

    fn version_key(&self) -> i64 {
        version_key(
            conv_bn_variables(&self.conv1, &self.bn1)
                .chain(self.blocks.iter().flat_map(ResidualBlock::variables)),
        )
    }
}
