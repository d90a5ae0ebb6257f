//! A ResNet trunk in torchvision's layout and parameter names (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer2.0.downsample.0`, …), up to `layer4`: ImageNet weights from
//! torchvision load 1:1 (without `fc`). Bottleneck blocks stride on the 3×3 (v1.5).

use tch::{Tensor, nn};

use super::init;
use super::spec::{Backbone, Block};

#[derive(Debug)]
struct ResidualBlock {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
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

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, init::batch_norm(1e-5, 0.1))
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
                )
            })
            .collect();
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            (
                conv(p / "downsample" / 0, c_in, c_out, 1, stride),
                bn(p / "downsample" / 1, c_out),
            )
        });
        (ResidualBlock { convs, downsample }, c_out)
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            ys = ys.apply(conv).apply_t(bn, train);
            if i != last {
                ys = ys.relu();
            }
        }
        let identity = match &self.downsample {
            Some((conv, bn)) => xs.apply(conv).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        (ys + identity).relu()
    }
}

#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<ResidualBlock>,
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
        }
    }

    /// (N, 3, H, W) → (N, features, H/32, W/32).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
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
}
