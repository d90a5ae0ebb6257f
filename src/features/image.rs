//! Image tensors. Capture has already stretched the whole frame to 224 × 224 RGB
//! (`videoscale add-borders=false`: no crop, no letterbox bars, as the authors' PIL
//! `resize`); here the packed bytes become the network's input: channels first, 0..1,
//! normalised with the dataset's mean and standard deviation.

use tch::{Device, Kind, Tensor};

use super::{IMAGE_BYTES, IMAGE_MEAN, IMAGE_SIDE, IMAGE_STD};

/// Packed RGB frames of [`IMAGE_BYTES`] each → (N, 224, 224, 3) uint8 on the CPU.
pub fn stack_frames<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Tensor {
    let mut bytes = Vec::new();
    for frame in frames {
        debug_assert_eq!(frame.len(), IMAGE_BYTES);
        bytes.extend_from_slice(frame);
    }
    let side = IMAGE_SIDE as i64;
    Tensor::from_slice(&bytes).view([-1, side, side, 3])
}

/// (…, 224, 224, 3) uint8 frames → (…, 3, 224, 224) normalised float on `device`.
pub fn images(frames: &Tensor, device: Device) -> Tensor {
    let dims = frames.dim() as i64;
    let mut order: Vec<i64> = (0..dims - 3).collect();
    order.extend([dims - 1, dims - 3, dims - 2]);
    let images = frames
        .to_device(device)
        .permute(order.as_slice())
        .to_kind(Kind::Float)
        / 255.0;
    normalise(&images)
}

/// Normalise (…, 3, H, W) images in 0..1 with the dataset statistics.
pub fn normalise(images: &Tensor) -> Tensor {
    let shape = [3, 1, 1];
    let device = images.device();
    let mean = Tensor::from_slice(&IMAGE_MEAN.map(|v| v as f32))
        .view(shape)
        .to_device(device);
    let std = Tensor::from_slice(&IMAGE_STD.map(|v| v as f32))
        .view(shape)
        .to_device(device);
    (images - mean) / std
}

/// Mirror (…, H, W, 3) frames left to right: the authors' only augmentation.
pub fn flip_horizontally(frames: &Tensor) -> Tensor {
    frames.flip([frames.dim() as i64 - 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_normalised_channels_first() {
        // A red frame with a white top-left pixel.
        let mut rgb: Vec<u8> = (0..IMAGE_BYTES)
            .map(|i| if i % 3 == 0 { 255 } else { 0 })
            .collect();
        rgb[..3].copy_from_slice(&[255, 255, 255]);
        let frames = stack_frames([rgb.as_slice(), rgb.as_slice()]);
        assert_eq!(frames.size(), [2, 224, 224, 3]);
        let t = images(&frames.unsqueeze(0), Device::Cpu);
        assert_eq!(t.size(), [1, 2, 3, 224, 224]);
        let red = (1.0 - IMAGE_MEAN[0]) / IMAGE_STD[0];
        let green = -IMAGE_MEAN[1] / IMAGE_STD[1];
        let white = (1.0 - IMAGE_MEAN[1]) / IMAGE_STD[1];
        assert!((t.double_value(&[0, 1, 0, 100, 100]) - red).abs() < 1e-5);
        assert!((t.double_value(&[0, 0, 1, 5, 200]) - green).abs() < 1e-5);
        assert!((t.double_value(&[0, 0, 1, 0, 0]) - white).abs() < 1e-5);
        // Flipped, the white pixel is top-right.
        let flipped = images(&flip_horizontally(&frames), Device::Cpu);
        assert!((flipped.double_value(&[1, 1, 0, 223]) - white).abs() < 1e-5);
        assert!((flipped.double_value(&[1, 1, 0, 0]) - green).abs() < 1e-5);
    }
}
