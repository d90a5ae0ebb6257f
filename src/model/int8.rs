//! Int8 convolutions on the CPU, for OpenL3's stack (`inference.openl3_precision =
//! "int8"`, off by default): weights quantized per output channel, activations per
//! tensor with ranges calibrated on generated audio, run by libtorch's own quantized
//! engine (oneDNN's where libtorch has it, ReLU fused). About 2× OpenL3's float32 speed
//! on an AVX2 CPU at a small accuracy cost, both measured by `avscene bench --int8`
//! (README).
//!
//! tch has no binding for libtorch's quantized convolutions (they are registered with
//! its dispatcher, outside ATen's generated API), so a few lines of C++ (int8/shim.cpp,
//! built by build.rs) call them by name.

use tch::{Kind, Tensor};

/// Why the int8 path cannot run.
#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    #[error("{0}")]
    Unavailable(String),
    #[error("libtorch's {op} failed: {message}")]
    Libtorch { op: &'static str, message: String },
}

/// The steps of a quantized activation: all 8 bits with oneDNN's engine (used where
/// libtorch has it); 7 (0..=127) with the others, as PyTorch's x86/fbgemm defaults do:
/// without VNNI their AVX2 kernels add u8×i8 products in pairs into 16 bits, which
/// saturate at full range. Measured on random weights, embedding cosine: fbgemm 0.9993 at
/// 8 bits and 0.9997 at 7; oneDNN 0.99985 at 8.
fn activation_levels() -> f64 {
    match engine().as_deref() {
        Ok("ONEDNN") => 255.0,
        _ => 127.0,
    }
}

/// An affine quantization of a tensor's values: `value ≈ scale × (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantization {
    pub scale: f64,
    pub zero_point: i64,
}

impl Quantization {
    /// The quantization covering `[min, max]` (widened to hold 0, which must be exact:
    /// padding and ReLU produce it) in the engine's activation steps.
    pub fn covering(min: f64, max: f64) -> Quantization {
        let levels = activation_levels();
        let (min, max) = (min.min(0.0), max.max(0.0));
        let scale = ((max - min) / levels).max(1e-8);
        let zero_point = ((-min / scale).round() as i64).clamp(0, levels as i64);
        Quantization { scale, zero_point }
    }

    /// `xs` (float32) as a quint8 tensor, laid out channels-last (the kernels' layout).
    pub fn quantize(&self, xs: &Tensor) -> Tensor {
        channels_last(xs).quantize_per_tensor(self.scale, self.zero_point, Kind::QUInt8)
    }
}

/// The same values with channels-last strides (NHWC in memory, NCHW in shape).
fn channels_last(xs: &Tensor) -> Tensor {
    xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// The quantized engine libtorch runs on this machine (`X86`, `FBGEMM`, `QNNPACK`, …), or
/// why there is none.
pub fn engine() -> Result<String, Int8Error> {
    static SETUP: std::sync::Once = std::sync::Once::new();
    SETUP.call_once(|| {
        ffi::prefer_onednn();
        ffi::quiet_deprecation();
    });
    let name = ffi::engine()?;
    if name == "NoQEngine" {
        return Err(Int8Error::Unavailable(
            "this libtorch has no quantized engine".into(),
        ));
    }
    Ok(name)
}

/// One convolution (square kernel, stride, padding, no groups) in int8: its weight
/// quantized per output channel and packed once for the engine, its output requantized to
/// `output`, optionally with the ReLU fused.
#[derive(Debug)]
pub struct Int8Conv {
    packed: ffi::Packed,
    output: Quantization,
    relu: bool,
}

impl Int8Conv {
    /// `weight` (O, I, k, k) and `bias` (O) in float32.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: i64,
        padding: i64,
        output: Quantization,
        relu: bool,
    ) -> Result<Int8Conv, Int8Error> {
        engine()?;
        let packed = tch::no_grad(|| {
            let weight = weight.detach().to_kind(Kind::Float).contiguous();
            // Symmetric per channel: i8 in −127..=127, zero point 0.
            let scales = weight.abs().amax([1, 2, 3], false).clamp_min(1e-12) / 127.0;
            let zeros = scales.zeros_like().to_kind(Kind::Int64);
            let quantized = weight.quantize_per_channel(&scales, &zeros, 0, Kind::QInt8);
            ffi::prepack(
                &quantized,
                &bias.detach().to_kind(Kind::Float),
                stride,
                padding,
            )
        })?;
        Ok(Int8Conv {
            packed,
            output,
            relu,
        })
    }

    /// Apply to a quint8 tensor; the result is quint8, quantized as `output`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor, Int8Error> {
        ffi::conv(xs, &self.packed, self.output, self.relu)
    }
}

#[cfg(avscene_int8)]
mod ffi {
    use std::ffi::{c_char, c_void};
    use std::ptr::NonNull;

    use super::*;
    use torch_sys::C_tensor;

    unsafe extern "C" {
        fn avscene_int8_engine(out: *mut c_char, len: usize);
        fn avscene_int8_quiet_deprecation();
        fn avscene_int8_prefer_onednn() -> i32;
        fn avscene_int8_conv_prepack(
            weight: *const C_tensor,
            bias: *const C_tensor,
            stride: i64,
            padding: i64,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        fn avscene_int8_conv_free(packed: *mut c_void);
        fn avscene_int8_conv(
            input: *const C_tensor,
            packed: *const c_void,
            scale: f64,
            zero_point: i64,
            relu: i32,
            err: *mut *mut c_char,
        ) -> *mut C_tensor;
    }

    /// libtorch's packed parameters for one convolution (an IValue on the C++ side).
    #[derive(Debug)]
    pub struct Packed(NonNull<c_void>);

    // The packed parameters are immutable once built and libtorch's quantized kernels
    // only read them, from whichever thread runs the convolution.
    unsafe impl Send for Packed {}
    unsafe impl Sync for Packed {}

    impl Drop for Packed {
        fn drop(&mut self) {
            // SAFETY: made by avscene_int8_conv_prepack, freed once here.
            unsafe { avscene_int8_conv_free(self.0.as_ptr()) }
        }
    }

    /// The message the shim left in `err`, freed.
    fn take_error(op: &'static str, err: *mut c_char) -> Int8Error {
        let message = if err.is_null() {
            "no message".to_string()
        } else {
            // SAFETY: a NUL-terminated string malloc'ed by the shim, ours to free.
            let text = unsafe { std::ffi::CStr::from_ptr(err) }
                .to_string_lossy()
                .into_owned();
            unsafe { libc::free(err.cast()) };
            text
        };
        Int8Error::Libtorch { op, message }
    }

    pub fn engine() -> Result<String, Int8Error> {
        let mut name = [0 as c_char; 32];
        // SAFETY: writes at most name.len() bytes, NUL-terminated.
        unsafe { avscene_int8_engine(name.as_mut_ptr(), name.len()) };
        let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
        Ok(name.to_string_lossy().into_owned())
    }

    pub fn prefer_onednn() -> bool {
        // SAFETY: no arguments; catches everything on the C++ side.
        unsafe { avscene_int8_prefer_onednn() != 0 }
    }

    pub fn quiet_deprecation() {
        // SAFETY: no arguments; catches everything on the C++ side.
        unsafe { avscene_int8_quiet_deprecation() }
    }

    pub fn prepack(
        weight: &Tensor,
        bias: &Tensor,
        stride: i64,
        padding: i64,
    ) -> Result<Packed, Int8Error> {
        let mut err = std::ptr::null_mut();
        // SAFETY: both tensors outlive the call; the shim copies what it keeps.
        let packed = unsafe {
            avscene_int8_conv_prepack(weight.as_ptr(), bias.as_ptr(), stride, padding, &mut err)
        };
        NonNull::new(packed)
            .map(Packed)
            .ok_or_else(|| take_error("quantized::conv2d_prepack", err))
    }

    pub fn conv(
        xs: &Tensor,
        packed: &Packed,
        output: Quantization,
        relu: bool,
    ) -> Result<Tensor, Int8Error> {
        let mut err = std::ptr::null_mut();
        // SAFETY: `xs` and `packed` outlive the call; the result is a new at::Tensor we own.
        let ys = unsafe {
            avscene_int8_conv(
                xs.as_ptr(),
                packed.0.as_ptr(),
                output.scale,
                output.zero_point,
                i32::from(relu),
                &mut err,
            )
        };
        if ys.is_null() {
            let op = if relu {
                "quantized::conv2d_relu"
            } else {
                "quantized::conv2d"
            };
            return Err(take_error(op, err));
        }
        // SAFETY: a heap at::Tensor* from the shim; Tensor takes ownership.
        Ok(unsafe { Tensor::from_ptr(ys) })
    }
}

/// Built without libtorch's headers (build.rs said so): no int8 path.
#[cfg(not(avscene_int8))]
mod ffi {
    use super::*;

    #[derive(Debug)]
    pub struct Packed;

    fn missing() -> Int8Error {
        Int8Error::Unavailable("avscene was built without libtorch's headers (no int8 shim)".into())
    }

    pub fn engine() -> Result<String, Int8Error> {
        Err(missing())
    }

    pub fn quiet_deprecation() {}

    pub fn prefer_onednn() -> bool {
        false
    }

    pub fn prepack(_: &Tensor, _: &Tensor, _: i64, _: i64) -> Result<Packed, Int8Error> {
        Err(missing())
    }

    pub fn conv(_: &Tensor, _: &Packed, _: Quantization, _: bool) -> Result<Tensor, Int8Error> {
        Err(missing())
    }
}

/// Generated audio to calibrate the activations' ranges on: `(N, samples)` frames at
/// `sample_rate` of white, pink-ish and brown noise, harmonic tones, a sweep and clicks,
/// each at several levels, and near-silence — spectra from flat to steep, steady and
/// impulsive, so the ranges cover what a microphone hears. Deterministic.
pub fn calibration_audio(sample_rate: i64, samples: i64) -> Tensor {
    let n = samples as usize;
    let rate = sample_rate as f64;
    let mut rng = crate::support::SplitMix(0x2545_f491_4f6c_dd1d);
    let mut noise = move || rng.range(-1.0, 1.0);
    let peak_normalized = |mut x: Vec<f64>, level_db: f64| {
        let peak = x.iter().fold(1e-12, |m, v| v.abs().max(m));
        let gain = 10f64.powf(level_db / 20.0) / peak;
        x.iter_mut().for_each(|v| *v *= gain);
        x
    };
    let mut frames: Vec<Vec<f64>> = Vec::new();
    for (i, level) in [-50.0, -26.0, -6.0].into_iter().enumerate() {
        let white: Vec<f64> = (0..n).map(|_| noise()).collect();
        // One-pole low-passes of white noise: a gentle and a steep spectral slope.
        let lowpass = |x: &[f64], a: f64| {
            let mut y = 0.0;
            x.iter()
                .map(|v| {
                    y = a * y + (1.0 - a) * v;
                    y
                })
                .collect::<Vec<f64>>()
        };
        let pink = lowpass(&white, 0.9);
        let brown = lowpass(&white, 0.995);
        let f0 = [110.0, 330.0, 990.0][i];
        let tone: Vec<f64> = (0..n)
            .map(|t| {
                let t = t as f64 / rate;
                (1..=6)
                    .map(|h| (std::f64::consts::TAU * f0 * h as f64 * t).sin() / h as f64)
                    .sum::<f64>()
            })
            .collect();
        // A logarithmic sweep from 40 Hz to 0.9 × Nyquist over the frame.
        let (f1, f2): (f64, f64) = (40.0, 0.45 * rate);
        let k = (f2 / f1).ln() / (n as f64 / rate);
        let sweep: Vec<f64> = (0..n)
            .map(|t| {
                let t = t as f64 / rate;
                (std::f64::consts::TAU * f1 * ((k * t).exp() - 1.0) / k).sin()
            })
            .collect();
        let clicks: Vec<f64> = (0..n)
            .map(|t| {
                if t % (n / 7).max(1) < 24 {
                    noise()
                } else {
                    0.01 * noise()
                }
            })
            .collect();
        for signal in [white, pink, brown, tone, sweep, clicks] {
            frames.push(peak_normalized(signal, level));
        }
    }
    frames.push((0..n).map(|_| 1e-5 * noise()).collect());
    let flat: Vec<f32> = frames.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_slice(&flat).view([frames.len() as i64, samples])
}
