//! OpenL3 framing: 1 s frames every 0.1 s on a fixed grid of stream time. A window that
//! starts at W uses the 96 frames centred on W, W + 0.1, … W + 9.5 s, each covering
//! [p − 0.5 s, p + 0.5 s); the half second before W is the window's lead (zeros before a
//! stream or clip began, exactly as openl3 pads a clip with `center=True`).

use super::{AUDIO_FRAME_HOP, AUDIO_FRAME_SAMPLES, AUDIO_FRAMES};

/// Append the samples of OpenL3 frame `i` of a window, read in place from its `lead`
/// (the [`super::LEAD_SAMPLES`] before it) and `audio` (no joined copy).
pub fn push_frame(lead: &[f32], audio: &[f32], i: usize, out: &mut Vec<f32>) {
    let (start, end) = (
        i * AUDIO_FRAME_HOP,
        i * AUDIO_FRAME_HOP + AUDIO_FRAME_SAMPLES,
    );
    let lead_len = lead.len();
    if start < lead_len {
        out.extend_from_slice(&lead[start..lead_len.min(end)]);
    }
    if end > lead_len {
        out.extend_from_slice(&audio[start.saturating_sub(lead_len)..end - lead_len]);
    }
}

/// The 96 OpenL3 frames of a window, flattened: (96 × 48 000) samples.
pub fn window_frames(lead: &[f32], audio: &[f32]) -> Vec<f32> {
    let mut frames = Vec::with_capacity(AUDIO_FRAMES * AUDIO_FRAME_SAMPLES);
    for i in 0..AUDIO_FRAMES {
        push_frame(lead, audio, i, &mut frames);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::super::{LEAD_SAMPLES, WINDOW_SAMPLES};
    use super::*;

    #[test]
    fn frames_read_across_the_lead_and_the_audio() {
        // Sample values are their position in lead + audio.
        let lead: Vec<f32> = (0..LEAD_SAMPLES).map(|i| i as f32).collect();
        let audio: Vec<f32> = (LEAD_SAMPLES..LEAD_SAMPLES + WINDOW_SAMPLES)
            .map(|i| i as f32)
            .collect();
        let frames = window_frames(&lead, &audio);
        assert_eq!(frames.len(), 96 * AUDIO_FRAME_SAMPLES);
        for i in [0usize, 4, 5, 6, 95] {
            let frame = &frames[i * AUDIO_FRAME_SAMPLES..(i + 1) * AUDIO_FRAME_SAMPLES];
            let expected: Vec<f32> = (i * AUDIO_FRAME_HOP
                ..i * AUDIO_FRAME_HOP + AUDIO_FRAME_SAMPLES)
                .map(|v| v as f32)
                .collect();
            assert_eq!(frame, &expected[..], "frame {i}");
        }
    }
}
