//! OpenL3 (mel256, content type "env", 512-d) in torchopenl3's layout and parameter names
//! (`speclayer.*`, `batch_normalization_1`, `conv2d_1`, …, `audio_embedding_layer`), so its
//! published state dict loads 1:1. One 1 s frame at 48 kHz → one 512-d embedding; each
//! frame is independent of its neighbours.

use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Tensor, nn};

use super::blocked::{
    Bf16Error, Derived, LayoutSwitch, PackedConv, Path, bf16_available, conv_bn_variables,
    fold_batch_norm, run_fastest, version_key,
};
use super::init;
use super::int8::{self, Int8Conv, Int8Error, Quantization};
use super::spec::{ModelSpec, OPENL3_EMBEDDING};
use crate::features::{FeatureSpec, spectrogram};

#[derive(Debug)]
pub struct OpenL3 {
    /// The kernels are the standard periodic-Hann DFT: compute the STFT by FFT.
    fft: AtomicBool,
    dft_real: Tensor,
    dft_imag: Tensor,
    mel_basis: Tensor,
    n_hop: i64,
    input_bn: nn::BatchNorm,
    /// (conv, batch norm after it, max-pool after the ReLU)
    convs: Vec<(nn::Conv2D, nn::BatchNorm, bool)>,
    embedding: nn::Conv2D,
    pool: [i64; 2],
    /// Inference copies of the convolutions with their batch norms folded in (one pass
    /// less over the large activations per layer); rebuilt whenever the weights were
    /// written (a model file, an import).
    folded: Derived<Vec<(Tensor, Tensor)>>,
    /// On the CPU, run the convolutions on oneDNN's blocked tensors (`to_mkldnn`, weights
    /// reordered once): ~1.4× the plain NCHW path on the conv stack, same results.
    blocked: LayoutSwitch,
    /// The folded convolutions and the embedding layer, reordered for oneDNN.
    packed: Derived<Vec<PackedConv>>,
    /// On the CPU, run the blocked stack in bfloat16 (opt-in, where the CPU has bf16
    /// instructions: faster, slightly less exact; `inference.openl3_precision`).
    bf16: AtomicBool,
    /// The same packed in bfloat16.
    packed_bf16: Derived<Vec<PackedConv>>,
    /// On the CPU, run the convolution stack in int8 (opt-in: faster, slightly less
    /// exact; `inference.openl3_precision`).
    int8: AtomicBool,
    /// The stack quantized and calibrated (src/model/int8.rs), or why it could not be.
    quantized: Derived<Result<Int8Stack, String>>,
    /// One frame's samples and their rate, for the calibration audio.
    frame: (i64, i64),
}

/// OpenL3's convolution stack in int8: how its input is quantized, then the seven
/// convolutions (ReLU fused) and the embedding layer, each requantizing its output to
/// the range calibrated for it.
#[derive(Debug)]
struct Int8Stack {
    input: Quantization,
    convs: Vec<Int8Conv>,
}

/// OpenL3's convolutions as (in, out, max-pooled after): blocks of two 3×3
/// convolutions, pooled 2×2 after each of the first three blocks; the embedding layer
/// follows.
pub(crate) fn conv_plan(channels: [i64; 4]) -> [(i64, i64, bool); 7] {
    let [c1, c2, c3, c4] = channels;
    [
        (1, c1, false),
        (c1, c1, true),
        (c1, c2, false),
        (c2, c2, true),
        (c2, c3, false),
        (c3, c3, true),
        (c3, c4, false),
    ]
}

/// Batch-norm epsilon of OpenL3 (Keras' 1e-3).
const BN_EPS: f64 = 1e-3;

impl OpenL3 {
    pub fn new(p: &nn::Path, spec: &ModelSpec, features: &FeatureSpec) -> OpenL3 {
        let spec_layer = p / "speclayer";
        // Buffers, not parameters: the defaults are computed here and replaced by the
        // model file's copies when it has them.
        let (real, imag) = spectrogram::dft_kernels(features.n_dft);
        let mel = spectrogram::mel_basis(features.sample_rate, features.n_dft, features.n_mels);
        let dft_real = spec_layer.add("dft_real_kernels", real.to_device(p.device()), false);
        let dft_imag = spec_layer.add("dft_imag_kernels", imag.to_device(p.device()), false);
        let mel_basis = spec_layer.add("mel_basis", mel.to_device(p.device()), false);

        let bn = |i: usize, c: i64| {
            nn::batch_norm2d(
                p / format!("batch_normalization_{i}"),
                c,
                init::batch_norm(BN_EPS, 0.01),
            )
        };
        let conv3 = |name: String, c_in: i64, c_out: i64| {
            nn::conv2d(
                p / name,
                c_in,
                c_out,
                3,
                nn::ConvConfig {
                    padding: 1,
                    ws_init: init::WEIGHT,
                    bs_init: init::bias(c_in * 9),
                    ..Default::default()
                },
            )
        };
        let c4 = spec.openl3_channels[3];
        let convs = conv_plan(spec.openl3_channels)
            .iter()
            .enumerate()
            .map(|(i, &(c_in, c_out, pool))| {
                (
                    conv3(format!("conv2d_{}", i + 1), c_in, c_out),
                    bn(i + 2, c_out),
                    pool,
                )
            })
            .collect();
        // After three 2×2 pools: mel bands / 8 × STFT frames / 8 (32 × 24 for mel256).
        let pool = [features.n_mels / 8, features.spectrogram_frames() / 8];
        OpenL3 {
            fft: AtomicBool::new(false),
            dft_real,
            dft_imag,
            mel_basis,
            n_hop: features.n_hop,
            input_bn: bn(1, 1),
            convs,
            embedding: conv3("audio_embedding_layer".into(), c4, OPENL3_EMBEDDING),
            pool,
            folded: Derived::new(),
            blocked: LayoutSwitch::new(),
            packed: Derived::new(),
            bf16: AtomicBool::new(false),
            packed_bf16: Derived::new(),
            int8: AtomicBool::new(false),
            quantized: Derived::new(),
            frame: (features.frame_samples, features.sample_rate),
        }
    }

    /// Run the convolution stack in int8 on the CPU (off by default). Turning it on
    /// quantizes and calibrates the stack now, so a machine or model that cannot run it
    /// says why here, not on the first window; it stays off then. Returns whether int8
    /// is in use.
    pub fn set_int8(&self, on: bool) -> Result<bool, Int8Error> {
        self.int8.store(false, Ordering::Relaxed);
        if !on {
            return Ok(false);
        }
        self.on_cpu("int8").map_err(Int8Error::Unavailable)?;
        int8::engine()?;
        self.with_int8(|_| ())
            .map_err(|message| Int8Error::Unavailable(message))?;
        self.int8.store(true, Ordering::Relaxed);
        Ok(true)
    }

    /// Whether the CPU path runs the convolution stack in int8.
    pub fn uses_int8(&self) -> bool {
        self.int8.load(Ordering::Relaxed)
    }

    /// Run the blocked convolution stack in bfloat16 on the CPU (off by default): its
    /// weights and activations rounded to bfloat16, accumulated in float32 by oneDNN's
    /// bf16 kernels, the embeddings back in float32. Only where the CPU has bf16
    /// instructions — without them oneDNN emulates bfloat16 at a hundredth of float32's
    /// speed — and libtorch has oneDNN. Packs the weights and runs one frame now, so a
    /// machine that cannot says why here. Returns whether bfloat16 is in use.
    pub fn set_bf16(&self, on: bool) -> Result<bool, Bf16Error> {
        self.bf16.store(false, Ordering::Relaxed);
        if !on {
            return Ok(false);
        }
        bf16_available(self.dft_real.device())?;
        let (samples, _) = self.frame;
        let silence = Tensor::zeros([1, samples], (tch::Kind::Float, tch::Device::Cpu));
        let xs = tch::no_grad(|| self.stack_input(&silence));
        let _embedding = self
            .convs_blocked(&xs, tch::Kind::BFloat16)
            .map_err(|e| Bf16Error::Libtorch(e.to_string()))?;
        self.bf16.store(true, Ordering::Relaxed);
        Ok(true)
    }

    /// `what` (a reduced-precision path) runs on the CPU only: why not, if the model is
    /// elsewhere.
    fn on_cpu(&self, what: &str) -> Result<(), String> {
        match self.dft_real.device() {
            tch::Device::Cpu => Ok(()),
            device => Err(format!(
                "{what} runs on the CPU; this model is on {device:?}"
            )),
        }
    }

    /// Whether the CPU path runs the convolution stack in bfloat16.
    pub fn uses_bf16(&self) -> bool {
        self.bf16.load(Ordering::Relaxed)
    }

    /// Use oneDNN's blocked layout on the CPU (the default where libtorch has oneDNN);
    /// off, the plain NCHW path. Returns whether it is in use.
    pub fn set_blocked(&self, on: bool) -> bool {
        self.blocked.set(on)
    }

    /// Whether the CPU path runs on oneDNN's blocked tensors.
    pub fn uses_blocked(&self) -> bool {
        self.blocked.is_on()
    }

    /// Compute the STFT by FFT instead of the kernel convolution (faster; equal above
    /// float32's noise floor) — only possible while the kernels are the standard DFT.
    /// Returns whether the FFT is in use.
    pub fn set_fft(&self, on: bool) -> bool {
        let standard = on && self.has_standard_kernels();
        self.fft.store(standard, Ordering::Relaxed);
        standard
    }

    fn has_standard_kernels(&self) -> bool {
        let n_dft = self.dft_real.size()[2];
        let (real, imag) = spectrogram::dft_kernels(n_dft);
        let close = |a: &Tensor, b: Tensor| {
            a.size() == b.size()
                && (a.to_device(tch::Device::Cpu) - b)
                    .abs()
                    .max()
                    .double_value(&[])
                    < 1e-5
        };
        close(&self.dft_real, real) && close(&self.dft_imag, imag)
    }

    /// Whether the STFT runs by FFT.
    pub fn uses_fft(&self) -> bool {
        self.fft.load(Ordering::Relaxed)
    }

    /// (N, n_mels, T) log-mel spectrograms of (N, 48000) frames.
    pub fn spectrogram(&self, frames: &Tensor) -> Tensor {
        let power = if self.uses_fft() {
            spectrogram::power_fft(frames, self.dft_real.size()[2], self.n_hop)
        } else {
            spectrogram::power_conv(frames, &self.dft_real, &self.dft_imag, self.n_hop)
        };
        spectrogram::log_mel_from_power(&power, &self.mel_basis)
    }

    /// The same through the DFT-kernel convolution, as kapre computes it.
    pub fn spectrogram_conv(&self, frames: &Tensor) -> Tensor {
        let (real, imag, mel) = (&self.dft_real, &self.dft_imag, &self.mel_basis);
        spectrogram::log_mel(frames, real, imag, mel, self.n_hop)
    }

    /// (N, 48000) frames → (N, 512) embeddings. OpenL3 is a frozen, pretrained feature
    /// extractor (no gradients reach it): its batch norms always use their running
    /// statistics, folded into the convolutions.
    pub fn forward(&self, frames: &Tensor) -> Tensor {
        self.embed_stack_input(&self.stack_input(frames))
    }

    /// The convolution stack and the embedding layer on [`OpenL3::stack_input`]'s
    /// spectrograms → (N, 512) embeddings, on the fastest path turned on.
    pub fn embed_stack_input(&self, xs: &Tensor) -> Tensor {
        if xs.device() == tch::Device::Cpu {
            let blocked = |kind| move || self.convs_blocked(xs, kind).map_err(|e| e.to_string());
            let (bf16, float) = (blocked(tch::Kind::BFloat16), blocked(tch::Kind::Float));
            let paths: [Path; 3] = [
                (&self.int8, "int8 path", &|| self.convs_int8(xs)),
                (&self.bf16, "bfloat16 path", &bf16),
                (&self.blocked.0, "blocked layout", &float),
            ];
            if let Some(ys) = run_fastest("OpenL3", &paths) {
                return ys;
            }
        }
        self.pooled(&self.folded_stack(xs, |_, _| ()))
    }

    /// The conv stack's input: (N, 1, n_mels, T) log-mel spectrograms of (N, 48000)
    /// frames, through the input batch norm.
    pub fn stack_input(&self, frames: &Tensor) -> Tensor {
        self.spectrogram(frames)
            .unsqueeze(1)
            .apply_t(&self.input_bn, false)
    }

    /// The folded float32 stack on `xs` up to the embedding convolution's output (before
    /// its pool). `observe(i, ys)` sees convolution i's output after its ReLU, and last
    /// the embedding convolution's (the int8 calibration reads their ranges).
    fn folded_stack(&self, xs: &Tensor, mut observe: impl FnMut(usize, &Tensor)) -> Tensor {
        let folded = self.folded_convs();
        let mut xs = xs.shallow_clone();
        for (i, ((weight, bias), (_, _, pool))) in folded.iter().zip(&self.convs).enumerate() {
            xs = xs
                .conv2d(weight, Some(bias), [1, 1], [1, 1], [1, 1], 1)
                .relu_();
            observe(i, &xs);
            if *pool {
                xs = xs.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            }
        }
        let embedding = xs.apply(&self.embedding);
        observe(folded.len(), &embedding);
        embedding
    }

    /// The same, layer by layer as torchopenl3 computes it (for checking the folding).
    pub fn forward_layers(&self, frames: &Tensor) -> Tensor {
        let mut xs = self.stack_input(frames);
        for (conv, bn, pool) in &self.convs {
            xs = xs.apply(conv).apply_t(bn, false).relu();
            if *pool {
                xs = xs.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            }
        }
        self.embed(&xs)
    }

    fn embed(&self, xs: &Tensor) -> Tensor {
        self.pooled(&xs.apply(&self.embedding))
    }

    /// The embedding layer's output max-pooled over the whole map: (N, 512).
    fn pooled(&self, embedding: &Tensor) -> Tensor {
        embedding
            .max_pool2d(self.pool, self.pool, [0, 0], [1, 1], false)
            .flatten(1, -1)
    }

    /// The folded convolution stack and the embedding on oneDNN's blocked tensors in
    /// `kind` (`Float`: the same arithmetic as the NCHW path, laid out for its vector
    /// units; `BFloat16`), with no reorder between layers; the embeddings come back in
    /// float32. No gradient (OpenL3 is frozen; blocked tensors have none).
    fn convs_blocked(&self, xs: &Tensor, kind: tch::Kind) -> Result<Tensor, tch::TchError> {
        let pack = || {
            let mut all: Vec<PackedConv> = self
                .folded_convs()
                .iter()
                .map(|(w, b)| PackedConv::new(kind, w, Some(b), 1, 1))
                .collect();
            let e = &self.embedding;
            all.push(PackedConv::new(kind, &e.ws, e.bs.as_ref(), 1, 1));
            all
        };
        let packed = match kind {
            tch::Kind::BFloat16 => &self.packed_bf16,
            _ => &self.packed,
        };
        packed.with(self.version_key(), pack, |packed| {
            tch::no_grad(|| {
                let mut ys = xs.f_to_mkldnn(kind)?;
                let (embedding, convs) = packed.split_last().expect("eight convolutions");
                for (conv, (_, _, pool)) in convs.iter().zip(&self.convs) {
                    ys = conv.f_forward(&ys)?.f_relu_()?;
                    if *pool {
                        ys = ys.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)?;
                    }
                }
                Ok(embedding
                    .f_forward(&ys)?
                    .f_max_pool2d(self.pool, self.pool, [0, 0], [1, 1], false)?
                    .f_to_dense(tch::Kind::Float, false)?
                    .flatten(1, -1))
            })
        })
    }

    /// The stack in int8: quantize the input once, stay in int8 through every
    /// convolution and pool, dequantize the 512 embeddings.
    fn convs_int8(&self, xs: &Tensor) -> Result<Tensor, String> {
        self.with_int8(|stack| {
            tch::no_grad(|| {
                let mut ys = stack.input.quantize(xs);
                let (embedding, convs) = stack.convs.split_last().expect("eight convolutions");
                for (conv, (_, _, pool)) in convs.iter().zip(&self.convs) {
                    ys = conv.forward(&ys)?;
                    if *pool {
                        ys = ys.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
                    }
                }
                Ok(self.pooled(&embedding.forward(&ys)?).dequantize())
            })
            .map_err(|e: Int8Error| e.to_string())
        })?
    }

    /// Run `f` on the int8 stack for the current weights, quantizing and calibrating it
    /// first if they changed.
    fn with_int8<R>(&self, f: impl FnOnce(&Int8Stack) -> R) -> Result<R, String> {
        self.quantized.with(
            self.version_key(),
            || self.quantize().map_err(|e| e.to_string()),
            |stack| stack.as_ref().map(f).map_err(Clone::clone),
        )
    }

    /// Calibrate each activation's range on generated audio through the float32 stack
    /// (the same folded convolutions), then quantize every convolution.
    fn quantize(&self) -> Result<Int8Stack, Int8Error> {
        let (samples, rate) = self.frame;
        let audio = int8::calibration_audio(rate, samples).to_device(self.dft_real.device());
        let folded = self.folded_convs();
        // (min, max) of the stack's input, then of each convolution's output.
        let mut ranges = vec![(f64::INFINITY, f64::NEG_INFINITY); folded.len() + 2];
        let mut widen = |i: usize, t: &Tensor| {
            let (lo, hi) = &mut ranges[i];
            *lo = lo.min(t.min().double_value(&[]));
            *hi = hi.max(t.max().double_value(&[]));
        };
        tch::no_grad(|| {
            for chunk in audio.split(4, 0) {
                let xs = self.stack_input(&chunk);
                widen(0, &xs);
                let _ = self.folded_stack(&xs, |i, ys| widen(i + 1, ys));
            }
        });
        let quantization = |(lo, hi): (f64, f64)| Quantization::covering(lo, hi);
        let mut convs = Vec::with_capacity(folded.len() + 1);
        for (i, (weight, bias)) in folded.iter().enumerate() {
            let output = quantization(ranges[i + 1]);
            convs.push(Int8Conv::new(weight, bias, 1, 1, output, true)?);
        }
        let e = &self.embedding;
        let bias = e.bs.as_ref().map_or_else(
            || Tensor::zeros([OPENL3_EMBEDDING], (tch::Kind::Float, e.ws.device())),
            Tensor::shallow_clone,
        );
        let output = quantization(ranges[folded.len() + 1]);
        convs.push(Int8Conv::new(&e.ws, &bias, 1, 1, output, false)?);
        Ok(Int8Stack {
            input: quantization(ranges[0]),
            convs,
        })
    }

    fn folded_convs(&self) -> Vec<(Tensor, Tensor)> {
        let fold = || {
            self.convs
                .iter()
                .map(|(conv, bn, _)| fold_batch_norm(conv, bn, BN_EPS))
                .collect()
        };
        self.folded.with(self.version_key(), fold, |folded| {
            folded
                .iter()
                .map(|(w, b)| (w.shallow_clone(), b.shallow_clone()))
                .collect()
        })
    }

    /// Changes whenever a convolution, batch norm or the embedding layer is written.
    fn version_key(&self) -> i64 {
        let e = &self.embedding;
        version_key(
            self.convs
                .iter()
                .flat_map(|(conv, bn, _)| conv_bn_variables(conv, bn))
                .chain([&e.ws])
                .chain(e.bs.iter()),
        )
    }
}
