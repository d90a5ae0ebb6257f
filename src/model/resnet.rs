//! A ResNet trunk in torchvision's layout and parameter names (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer2.0.downsample.0`, …), up to `layer4`: ImageNet weights from
//! torchvision load 1:1 (without `fc`). Bottleneck blocks stride on the 3×3 (v1.5).
//! In eval mode on the CPU it runs on oneDNN's blocked tensors, batch norms folded
//! (`super::blocked`), in float32 or, opt-in where the CPU has bf16 instructions, in
//! bfloat16; training keeps the plain layout.

use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Kind, Tensor, nn};

use super::blocked::{
    Bf16Error, Derived, LayoutSwitch, PackedConv, Path, bf16_available, conv_bn_variables,
    run_fastest, version_key,
};
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

    fn pack(&self, kind: Kind) -> PackedBlock {
        let pack = |(conv, bn, stride): &(nn::Conv2D, nn::BatchNorm, i64)| {
            PackedConv::folded(kind, conv, bn, BN_EPS, *stride, padding(conv))
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
    fn forward(&self, xs: &Tensor) -> Result<Tensor, tch::TchError> {
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, conv) in self.convs.iter().enumerate() {
            ys = conv.f_forward(&ys)?;
            if i != last {
                ys = ys.f_relu_()?;
            }
        }
        let identity = match &self.downsample {
            Some(conv) => conv.f_forward(xs)?,
            None => xs.shallow_clone(),
        };
        ys.f_add(&identity)?.f_relu_()
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
    /// Run the blocked trunk in bfloat16 (opt-in, where the CPU has bf16 instructions:
    /// faster, slightly less exact; `inference.image_precision`).
    bf16: AtomicBool,
    /// The same packed in bfloat16.
    packed_bf16: Derived<PackedTrunk>,
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
            bf16: AtomicBool::new(false),
            packed_bf16: Derived::new(),
        }
    }

    /// Run the eval-mode trunk in bfloat16 on the CPU (off by default): its folded
    /// weights and activations rounded to bfloat16, accumulated in float32 by oneDNN's
    /// bf16 kernels, the feature maps back in float32. Only on the blocked layout, where
    /// the CPU has bf16 instructions; packs the weights and runs one image now, so a
    /// machine that cannot says why here. Returns whether bfloat16 is in use.
    pub fn set_bf16(&self, on: bool) -> Result<bool, Bf16Error> {
        self.bf16.store(false, Ordering::Relaxed);
        if !on {
            return Ok(false);
        }
        bf16_available(self.conv1.ws.device())?;
        if !self.uses_blocked() {
            return Err(Bf16Error::Unavailable(
                "bfloat16 runs on oneDNN's blocked layout, which is off".into(),
            ));
        }
        let image = Tensor::zeros([1, 3, 64, 64], (Kind::Float, tch::Device::Cpu));
        let _maps = self
            .forward_blocked(&image, Kind::BFloat16)
            .map_err(|e| Bf16Error::Libtorch(e.to_string()))?;
        self.bf16.store(true, Ordering::Relaxed);
        Ok(true)
    }

    /// Whether eval mode on the CPU runs the trunk in bfloat16.
    pub fn uses_bf16(&self) -> bool {
        self.bf16.load(Ordering::Relaxed) && self.uses_blocked()
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
            let blocked = |kind| move || self.forward_blocked(xs, kind).map_err(|e| e.to_string());
            let (bf16, float) = (blocked(Kind::BFloat16), blocked(Kind::Float));
            let paths: [Path; 2] = [
                (&self.bf16, "bfloat16 path", &bf16),
                (&self.blocked.0, "blocked layout", &float),
            ];
            if let Some(ys) = run_fastest("the ResNet", &paths) {
                return ys;
            }
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

    /// The eval-mode trunk on blocked tensors in `kind` (`Float`, `BFloat16`; no
    /// gradient), packed on first use and again after any of its variables changed; the
    /// feature maps come back in float32.
    fn forward_blocked(&self, xs: &Tensor, kind: Kind) -> Result<Tensor, tch::TchError> {
        let pack = || PackedTrunk {
            conv1: PackedConv::folded(kind, &self.conv1, &self.bn1, BN_EPS, 2, 3),
            blocks: self.blocks.iter().map(|b| b.pack(kind)).collect(),
        };
        let packed = match kind {
            Kind::BFloat16 => &self.packed_bf16,
            _ => &self.packed,
        };
        packed.with(self.version_key(), pack, |packed| {
            tch::no_grad(|| {
                let mut ys = packed
                    .conv1
                    .f_forward(&xs.f_to_mkldnn(kind)?)?
                    .f_relu_()?
                    .f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
                for block in &packed.blocks {
                    ys = block.forward(&ys)?;
                }
                ys.f_to_dense(Kind::Float, false)
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
