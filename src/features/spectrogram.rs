//! OpenL3's log-mel front end, as kapre 0.1.4 computed it (and torchopenl3 reproduces):
//! 'same' padding, an STFT as a convolution with periodic-Hann DFT kernels, power, an HTK
//! mel matrix, square root, decibels relative to each frame's maximum, floor −80 dB.
//! The kernels and the mel matrix are tensors of the model file (`openl3.speclayer.*`);
//! the functions here compute their defaults.

use std::f64::consts::PI;

use tch::Tensor;

/// DFT kernels of size `n_dft` windowed with a periodic Hann window, shaped as conv1d
/// weights: real and imaginary parts, each (n_dft/2 + 1, 1, n_dft).
pub fn dft_kernels(n_dft: i64) -> (Tensor, Tensor) {
    let bins = n_dft / 2 + 1;
    let n = n_dft as usize;
    let window: Vec<f64> = (0..n)
        .map(|t| 0.5 - 0.5 * (2.0 * PI * t as f64 / n_dft as f64).cos())
        .collect();
    let mut real = Vec::with_capacity(bins as usize * n);
    let mut imag = Vec::with_capacity(bins as usize * n);
    for k in 0..bins {
        let w_k = k as f64 * 2.0 * PI / n_dft as f64;
        for (t, win) in window.iter().enumerate() {
            // kapre multiplies by a float32 window: keep that rounding.
            let win = *win as f32 as f64;
            real.push(((w_k * t as f64).cos() * win) as f32);
            imag.push((-(w_k * t as f64).sin() * win) as f32);
        }
    }
    let shape = [bins, 1, n_dft];
    (
        Tensor::from_slice(&real).view(shape),
        Tensor::from_slice(&imag).view(shape),
    )
}

fn hz_to_mel_htk(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz_htk(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// HTK mel filters from 0 Hz to Nyquist with area normalisation (kapre 0.1.4's `norm=1`,
/// librosa ≤ 0.6): (n_mels, n_dft/2 + 1). Bands narrower than an FFT bin stay empty, as
/// in the original.
pub fn mel_basis(sample_rate: i64, n_dft: i64, n_mels: i64) -> Tensor {
    let bins = (n_dft / 2 + 1) as usize;
    let n_mels_u = n_mels as usize;
    let fmax = sample_rate as f64 / 2.0;
    let (mel_min, mel_max) = (hz_to_mel_htk(0.0), hz_to_mel_htk(fmax));
    let mel_f: Vec<f64> = (0..n_mels_u + 2)
        .map(|i| mel_to_hz_htk(mel_min + (mel_max - mel_min) * i as f64 / (n_mels_u + 1) as f64))
        .collect();
    let fft_f: Vec<f64> = (0..bins)
        .map(|j| fmax * j as f64 / (bins - 1) as f64)
        .collect();
    let mut weights = vec![0f32; n_mels_u * bins];
    for i in 0..n_mels_u {
        let (lo, mid, hi) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
        let enorm = 2.0 / (hi - lo);
        for (j, f) in fft_f.iter().enumerate() {
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            weights[i * bins + j] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    Tensor::from_slice(&weights).view([n_mels, bins as i64])
}

/// Left and right zero padding of Keras' 'same' convolution for a frame of `len` samples.
pub fn same_padding(len: i64, n_dft: i64, n_hop: i64) -> (i64, i64) {
    let along = if len % n_hop == 0 {
        (n_dft - n_hop).max(0)
    } else {
        (n_dft - len % n_hop).max(0)
    };
    (along / 2, along - along / 2)
}

/// The STFT power of (N, samples) frames as kapre computes it: a convolution with the
/// given DFT kernels → (N, bins, T).
pub fn power_conv(frames: &Tensor, dft_real: &Tensor, dft_imag: &Tensor, n_hop: i64) -> Tensor {
    let n_dft = dft_real.size()[2];
    let (left, right) = same_padding(frames.size()[1], n_dft, n_hop);
    let padded = frames.unsqueeze(1).constant_pad_nd([left, right]);
    let re = padded.conv1d(dft_real, None::<Tensor>, [n_hop], [0], [1], 1);
    let im = padded.conv1d(dft_imag, None::<Tensor>, [n_hop], [0], [1], 1);
    re.square() + im.square()
}

/// The same power spectrum through an FFT with a periodic Hann window: equal to
/// [`power_conv`] with the default kernels up to float rounding, at a fraction of the
/// cost (the convolution is a 1025 × 2048 matrix product per STFT frame).
pub fn power_fft(frames: &Tensor, n_dft: i64, n_hop: i64) -> Tensor {
    let (left, right) = same_padding(frames.size()[1], n_dft, n_hop);
    let padded = frames.constant_pad_nd([left, right]);
    let window = Tensor::hann_window_periodic(n_dft, true, (tch::Kind::Float, frames.device()));
    let spectrum = padded.stft(n_dft, n_hop, n_dft, Some(&window), false, true, true, false);
    spectrum.abs().square()
}

/// (N, bins, T) power → (N, n_mels, T) decibels relative to each frame's maximum.
pub fn log_mel_from_power(power: &Tensor, mel: &Tensor) -> Tensor {
    let amplitude = mel.matmul(power).sqrt();
    let ln10 = std::f32::consts::LN_10 as f64;
    let db = amplitude.clamp_min(1e-10).log() * 10.0 / ln10;
    let peak = db.amax([1, 2], true);
    (db - peak).clamp_min(-80.0)
}

/// (N, samples) frames → (N, n_mels, T) through the DFT-kernel convolution.
pub fn log_mel(
    frames: &Tensor,
    dft_real: &Tensor,
    dft_imag: &Tensor,
    mel: &Tensor,
    n_hop: i64,
) -> Tensor {
    log_mel_from_power(&power_conv(frames, dft_real, dft_imag, n_hop), mel)
}
