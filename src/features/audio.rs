//! OpenL3 framing: 1 s frames every 0.1 s. A clip is padded with half a frame of zeros at
//! the front (openl3's `center=True`) and at the tail to whole hops, so a 10 s clip gives
//! 96 frames whose centres are 0.0, 0.1, … 9.5 s.

use tch::Tensor;

use super::FeatureSpec;

/// Frames of a clip as openl3 0.3.1 frames it: (frames, frame_samples).
pub fn clip_frames(samples: &[f32], spec: &FeatureSpec) -> Tensor {
    let half = spec.frame_samples / 2;
    let padded_len = half + samples.len() as i64;
    let hops = if padded_len <= spec.frame_samples {
        0
    } else {
        (padded_len - spec.frame_samples + spec.frame_hop - 1) / spec.frame_hop
    };
    let total = spec.frame_samples + hops * spec.frame_hop;
    let signal = Tensor::from_slice(samples).constant_pad_nd([half, total - padded_len]);
    signal.unfold(0, spec.frame_samples, spec.frame_hop)
}

/// Frames of a live window from the audio that spans [W − 0.5 s, W + 10 s): the 96
/// frames centred on W, W + 0.1, … W + 9.5 s.
pub fn window_frames(span: &Tensor, spec: &FeatureSpec) -> Tensor {
    span.unfold(0, spec.frame_samples, spec.frame_hop)
}
