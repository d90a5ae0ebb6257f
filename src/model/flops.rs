//! The arithmetic of the encoders, counted from the architecture (two operations per
//! multiply-add of every convolution, of OpenL3's STFT as its DFT-kernel convolution, and
//! of the mel product; with `fast_stft`, the STFT as the FFT's ~2.5 n log₂ n operations
//! for n real samples, a hundredth of the kernels'; biases, batch norms, ReLUs and pools
//! are left out, a rounding error beside them): what `avscene bench` divides by time to
//! report GFLOP/s.

use super::ModelSpec;
use super::spec::Block;
use crate::features::FeatureSpec;

/// Multiply-adds of a `k`×`k` convolution from `c_in` to `c_out` channels over an
/// `h`×`w` output.
fn conv(c_in: i64, c_out: i64, k: i64, h: i64, w: i64) -> f64 {
    (c_in * c_out * k * k) as f64 * (h * w) as f64
}

/// Floating-point operations of OpenL3 on one 1 s frame: the STFT (by the DFT-kernel
/// convolution, or by FFT), the mel product and the eight 3×3 convolutions.
pub fn openl3_frame(spec: &ModelSpec, features: &FeatureSpec, fft: bool) -> f64 {
    openl3_spectrogram(features, fft) + openl3_convolutions(spec, features)
}

/// Of which the log-mel spectrogram: the STFT and the mel product.
pub fn openl3_spectrogram(features: &FeatureSpec, fft: bool) -> f64 {
    let frames = features.spectrogram_frames();
    let bins = features.n_dft / 2 + 1;
    let n = features.n_dft as f64;
    // Multiply-adds: by the kernels, real and imaginary, each `n_dft` taps per bin and
    // frame; by a real FFT, ~2.5 n log₂ n operations a frame (half a complex one's 5).
    let stft = if fft {
        1.25 * n * n.log2() * frames as f64
    } else {
        (2 * bins * features.n_dft * frames) as f64
    };
    let mel = (features.n_mels * bins * frames) as f64;
    2.0 * (stft + mel)
}

/// Of which the eight 3×3 convolutions.
pub fn openl3_convolutions(spec: &ModelSpec, features: &FeatureSpec) -> f64 {
    let (mut h, mut w) = (features.n_mels, features.spectrogram_frames());
    let mut convs = 0.0;
    for (c_in, c_out, pool) in super::openl3::conv_plan(spec.openl3_channels) {
        convs += conv(c_in, c_out, 3, h, w);
        if pool {
            (h, w) = (h / 2, w / 2);
        }
    }
    convs += conv(spec.openl3_channels[3], super::OPENL3_EMBEDDING, 3, h, w);
    2.0 * convs
}

/// Floating-point operations of the image backbone on one `side`×`side` image.
pub fn resnet_image(spec: &ModelSpec, side: i64) -> f64 {
    let b = &spec.backbone;
    let out = |size: i64, stride: i64| (size + stride - 1) / stride;
    let mut size = out(side, 2);
    let mut macs = conv(3, b.width, 7, size, size);
    size = out(size, 2); // the max pool
    let mut c_in = b.width;
    for (stage, &count) in b.layers.iter().enumerate() {
        let planes = b.width << stage;
        for i in 0..count {
            let stride = if i == 0 && stage > 0 { 2 } else { 1 };
            let next = out(size, stride);
            let c_out = match b.block {
                Block::Basic => {
                    macs += conv(c_in, planes, 3, next, next) + conv(planes, planes, 3, next, next);
                    planes
                }
                Block::Bottleneck => {
                    macs += conv(c_in, planes, 1, size, size)
                        + conv(planes, planes, 3, next, next)
                        + conv(planes, planes * 4, 1, next, next);
                    planes * 4
                }
            };
            if stride != 1 || c_in != c_out {
                macs += conv(c_in, c_out, 1, next, next);
            }
            (c_in, size) = (c_out, next);
        }
    }
    2.0 * macs
}

/// What the encoders compute for one window: `audio_frames` OpenL3 frames (their STFT by
/// FFT or not) and `images` images.
pub fn window(
    spec: &ModelSpec,
    features: &FeatureSpec,
    audio_frames: i64,
    fft: bool,
    images: i64,
) -> f64 {
    audio_frames as f64 * openl3_frame(spec, features, fft)
        + images as f64 * resnet_image(spec, features.image_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet50_costs_what_the_literature_says() {
        // torchvision's ResNet50 at 224 × 224: 4.09 GMAC without its fc layer.
        let gflop = resnet_image(&ModelSpec::full(), 224) / 1e9;
        assert!((gflop - 8.18).abs() < 0.05, "{gflop}");
    }

    #[test]
    fn an_openl3_frame_costs_twenty_two_gflop() {
        // mel256 / 512: eight 3×3 convolutions over 256 × 199 → 32 × 24 (10.2 GMAC: the
        // 64→64 one at full resolution alone is 1.9), plus the STFT as a kernel
        // convolution (2 × 1025 bins × 2048 taps × 199 frames: 1.7 GFLOP) and the mel
        // product (0.1).
        let (spec, features) = (ModelSpec::full(), FeatureSpec::default());
        let gflop = openl3_frame(&spec, &features, false) / 1e9;
        assert!((gflop - 22.18).abs() < 0.05, "{gflop}");
        let convolutions = openl3_convolutions(&spec, &features) / 1e9;
        assert!((convolutions - 20.41).abs() < 0.05, "{convolutions}");
    }

    #[test]
    fn the_fft_counts_what_it_computes_not_the_kernels() {
        // 199 real FFTs of 2048 samples: 2.5 × 2048 × 11 × 199 ≈ 11 MFLOP, where the
        // kernel convolution is 1.67 GFLOP.
        let (spec, features) = (ModelSpec::full(), FeatureSpec::default());
        let saved = openl3_frame(&spec, &features, false) - openl3_frame(&spec, &features, true);
        let fft = 2.5 * 2048.0 * 11.0 * 199.0;
        let kernels = 2.0 * 2.0 * 1025.0 * 2048.0 * 199.0;
        assert!((saved - (kernels - fft)).abs() < 1.0, "{saved}");
    }
}
