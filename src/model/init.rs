//! How freshly created layers start: as PyTorch starts them, since the authors' recipe
//! (and its learning rate) assumes it. tch's own defaults differ — Kaiming-uniform weights
//! for ReLU (√6 ≈ 2.45 × PyTorch's bound), zero convolution biases, BatchNorm γ ~ U(0, 1) —
//! which, with attention that has no 1/√d_k scaling, starts the softmax nearly one-hot.
//! - `nn.Linear`, `nn.Conv*d`: weight and bias U(±1/√fan_in) (`kaiming_uniform_(a=√5)`);
//! - `nn.BatchNorm*d`, `nn.LayerNorm`: γ = 1, β = 0;
//! - torchvision's ResNet convolutions: `kaiming_normal_(mode="fan_out", relu)`.

use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init};

/// Weights of `nn.Linear` and `nn.Conv*d`: U(±1/√fan_in) — Kaiming-uniform with
/// PyTorch's gain √(2 / (1 + 5)) = 1/√3.
pub const WEIGHT: Init = Init::Kaiming {
    dist: NormalOrUniform::Uniform,
    fan: FanInOut::FanIn,
    non_linearity: NonLinearity::ExplicitGain(0.577_350_269_189_625_8),
};

/// Convolutions of torchvision's ResNet: N(0, 2 / fan_out).
pub const RESNET_CONV: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

/// Biases of `nn.Linear` and `nn.Conv*d` with `fan_in` inputs per output.
pub fn bias(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// `nn.Linear(in_dim, out_dim)`.
pub fn linear(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: WEIGHT,
        bs_init: Some(bias(in_dim)),
        bias: true,
    };
    nn::linear(p, in_dim, out_dim, config)
}

/// `nn.BatchNorm*d` with γ = 1, β = 0 and the given epsilon and momentum.
pub fn batch_norm(eps: f64, momentum: f64) -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        eps,
        momentum,
        ws_init: Init::Const(1.0),
        bs_init: Init::Const(0.0),
        ..Default::default()
    }
}
