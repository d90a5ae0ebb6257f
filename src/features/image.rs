//! Image preprocessing: RGB to 224×224 (stretched, no crop), 0..1, normalised with the
//! dataset's mean and standard deviation, channels first.

use tch::{Kind, Tensor};

use super::FeatureSpec;

#[derive(Debug, thiserror::Error)]
#[error("image of {width}×{height} needs {expected} RGB bytes, got {got}")]
pub struct ImageSizeError {
    pub width: usize,
    pub height: usize,
    pub expected: usize,
    pub got: usize,
}

/// Packed RGB bytes (row-major, no padding) → (3, 224, 224) float tensor.
pub fn preprocess(
    rgb: &[u8],
    width: usize,
    height: usize,
    spec: &FeatureSpec,
) -> Result<Tensor, ImageSizeError> {
    let expected = width * height * 3;
    if rgb.len() != expected || width == 0 || height == 0 {
        return Err(ImageSizeError {
            width,
            height,
            expected,
            got: rgb.len(),
        });
    }
    let image = Tensor::from_slice(rgb)
        .view([height as i64, width as i64, 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Float)
        / 255.0;
    let side = spec.image_size;
    let image = if (height as i64, width as i64) == (side, side) {
        image
    } else {
        image
            .unsqueeze(0)
            .upsample_bilinear2d([side, side], false, None, None)
            .squeeze_dim(0)
    };
    Ok(normalise(&image, spec))
}

/// Normalise (…, 3, H, W) images in 0..1 with the dataset statistics.
pub fn normalise(images: &Tensor, spec: &FeatureSpec) -> Tensor {
    let shape = [3, 1, 1];
    let mean = Tensor::from_slice(&spec.image_mean.map(|v| v as f32))
        .view(shape)
        .to_device(images.device());
    let std = Tensor::from_slice(&spec.image_std.map(|v| v as f32))
        .view(shape)
        .to_device(images.device());
    (images - mean) / std
}
