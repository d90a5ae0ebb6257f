//! The CPU's fast layout for the frozen-in-eval encoders (OpenL3's conv stack, the
//! ResNet trunk): each convolution with the batch norm after it folded in, its weight
//! reordered once for oneDNN, so the stack runs on oneDNN's blocked tensors
//! (`to_mkldnn`) with no reorder between layers. Inference only: blocked tensors carry
//! no gradient.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Kind, Tensor, nn};

/// Whether an encoder runs its eval-mode convolutions on blocked tensors on the CPU: on
/// by default where libtorch has oneDNN, never where it has not.
#[derive(Debug)]
pub struct LayoutSwitch(pub(super) AtomicBool);

impl LayoutSwitch {
    pub fn new() -> LayoutSwitch {
        LayoutSwitch(AtomicBool::new(tch::utils::has_mkldnn()))
    }

    /// Turn the blocked layout on or off; returns whether it is in use.
    pub fn set(&self, on: bool) -> bool {
        let on = on && tch::utils::has_mkldnn();
        self.0.store(on, Ordering::Relaxed);
        on
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One of an encoder's CPU paths: whether it is on, its name for the log, and the run.
pub type Path<'a> = (
    &'a AtomicBool,
    &'a str,
    &'a dyn Fn() -> Result<Tensor, String>,
);

/// The output of the first of `paths` (fastest first) that is on and runs. One that
/// fails is turned off for good and logged, and the next one runs — a failure is never a
/// panic in the inference loop; `None` when none is on or all failed (the caller's plain
/// path runs then).
pub fn run_fastest(encoder: &str, paths: &[Path]) -> Option<Tensor> {
    for (on, path, run) in paths {
        if on.load(Ordering::Relaxed) {
            match run() {
                Ok(ys) => return Some(ys),
                Err(e) => {
                    tracing::error!("{encoder}'s {path} failed ({e}); not used from now on");
                    on.store(false, Ordering::Relaxed);
                }
            }
        }
    }
    None
}

/// Why an encoder's bfloat16 path cannot run.
#[derive(Debug, thiserror::Error)]
pub enum Bf16Error {
    #[error("{0}")]
    Unavailable(String),
    #[error("libtorch's bfloat16 convolution failed: {0}")]
    Libtorch(String),
}

/// Whether an encoder on `device` can run its blocked path in bfloat16: on the CPU, with
/// oneDNN, and with the CPU's bf16 instructions — without them oneDNN emulates bfloat16
/// at a hundredth of float32's speed.
pub fn bf16_available(device: tch::Device) -> Result<(), Bf16Error> {
    let why = if device != tch::Device::Cpu {
        format!("bfloat16 runs on the CPU; this model is on {device:?}")
    } else if !tch::utils::has_mkldnn() {
        "this libtorch has no oneDNN (mkldnn)".into()
    } else if crate::support::cpu::bf16_instructions().is_none() {
        "this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16 in /proc/cpuinfo)".into()
    } else {
        return Ok(());
    };
    Err(Bf16Error::Unavailable(why))
}

/// A copy derived from some variables (folded, packed), rebuilt whenever their
/// [`version_key`] changed since it was built.
#[derive(Debug)]
pub struct Derived<T>(Mutex<Option<(i64, T)>>);

impl<T> Derived<T> {
    pub fn new() -> Derived<T> {
        Derived(Mutex::new(None))
    }

    /// Run `f` on the copy for variables at `key`, building it first if needed.
    pub fn with<R>(&self, key: i64, build: impl FnOnce() -> T, f: impl FnOnce(&T) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|(built, _)| *built != key) {
            *guard = Some((key, build()));
        }
        f(&guard.as_ref().expect("built above").1)
    }
}

/// A convolution ready for `mkldnn_convolution`: folded, reordered, with its geometry.
#[derive(Debug)]
pub struct PackedConv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    padding: i64,
}

impl PackedConv {
    /// `weight` and `bias` (plain tensors, batch norm already folded) reordered for a
    /// square kernel with this stride and padding, in `kind` (`Float`, or `BFloat16` for
    /// inputs blocked in bfloat16).
    pub fn new(
        kind: Kind,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: i64,
        padding: i64,
    ) -> PackedConv {
        let weight = tch::no_grad(|| {
            weight.g_to_mkldnn(kind).mkldnn_reorder_conv2d_weight(
                [padding, padding],
                [stride, stride],
                [1, 1],
                1,
                None::<&[i64]>,
            )
        });
        PackedConv {
            weight,
            bias: bias.map(|b| b.detach().to_kind(kind)),
            stride,
            padding,
        }
    }

    /// `conv` followed by `bn` (running statistics, epsilon `eps`), folded and packed in
    /// `kind`.
    pub fn folded(
        kind: Kind,
        conv: &nn::Conv2D,
        bn: &nn::BatchNorm,
        eps: f64,
        stride: i64,
        padding: i64,
    ) -> PackedConv {
        let (weight, bias) = fold_batch_norm(conv, bn, eps);
        PackedConv::new(kind, &weight, Some(&bias), stride, padding)
    }

    /// Apply to a blocked (`to_mkldnn`) tensor; the result is blocked too.
    pub fn f_forward(&self, xs: &Tensor) -> Result<Tensor, tch::TchError> {
        xs.f_mkldnn_convolution(
            &self.weight,
            self.bias.as_ref(),
            [self.padding, self.padding],
            [self.stride, self.stride],
            [1, 1],
            1,
        )
    }
}

/// The weight and bias of `conv` followed by `bn` in eval mode, as one convolution:
/// w·γ/√(σ²+ε) and (b − μ)·γ/√(σ²+ε) + β per output channel.
pub fn fold_batch_norm(conv: &nn::Conv2D, bn: &nn::BatchNorm, eps: f64) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let gamma = bn
            .ws
            .as_ref()
            .map_or_else(|| bn.running_var.ones_like(), Tensor::shallow_clone);
        let beta = bn
            .bs
            .as_ref()
            .map_or_else(|| bn.running_mean.zeros_like(), Tensor::shallow_clone);
        let scale = gamma * (&bn.running_var + eps).rsqrt();
        let weight = &conv.ws * scale.view([-1, 1, 1, 1]);
        let conv_bias = conv
            .bs
            .as_ref()
            .map_or_else(|| scale.zeros_like(), Tensor::shallow_clone);
        let bias = (conv_bias - &bn.running_mean) * scale + beta;
        (weight, bias)
    })
}

/// A sum of the version counters of `tensors`: it changes whenever one of them is
/// written in place (an optimizer step, a batch norm's running statistics in training,
/// loading a file into the variables), so a packed copy keyed by it is never stale.
pub fn version_key<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> i64 {
    tensors.into_iter().map(Tensor::internal_version).sum()
}

/// The variables a folded `conv` + `bn` is made from, for [`version_key`].
pub fn conv_bn_variables<'a>(
    conv: &'a nn::Conv2D,
    bn: &'a nn::BatchNorm,
) -> impl Iterator<Item = &'a Tensor> {
    [&conv.ws, &bn.running_mean, &bn.running_var]
        .into_iter()
        .chain(conv.bs.iter())
        .chain(bn.ws.iter())
        .chain(bn.bs.iter())
}
