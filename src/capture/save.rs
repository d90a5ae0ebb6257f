//! Writing a window to disk as the model sees it: the audio as a 32-bit float WAV, each
//! frame as a PNG, or the frames as a lossless video (FFV1 in Matroska, 1 fps) that the
//! capture path decodes back to the very same pixels.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::features::{IMAGE_SIDE, SAMPLE_RATE};
use crate::window::Window;

/// Mono 32-bit IEEE float WAV.
pub fn write_wav(path: &Path, samples: &[f32]) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    let data_len = (samples.len() * 4) as u32;
    w.write_all(b"RIFF")?;
    w.write_all(&(36 + data_len).to_le_bytes())?;
    w.write_all(b"WAVEfmt ")?;
    w.write_all(&16u32.to_le_bytes())?;
    w.write_all(&3u16.to_le_bytes())?; // IEEE float
    w.write_all(&1u16.to_le_bytes())?; // mono
    w.write_all(&(SAMPLE_RATE as u32).to_le_bytes())?;
    w.write_all(&(SAMPLE_RATE as u32 * 4).to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&32u16.to_le_bytes())?;
    w.write_all(b"data")?;
    w.write_all(&data_len.to_le_bytes())?;
    for s in samples {
        w.write_all(&s.to_le_bytes())?;
    }
    w.flush()
}

/// A 224×224 RGB frame as PNG.
pub fn write_png(path: &Path, rgb: &[u8]) -> std::io::Result<()> {
    let mut file = BufWriter::new(File::create(path)?);
    file.write_all(&encode_png(rgb)?)?;
    file.flush()
}

/// A 224×224 RGB frame as PNG bytes.
pub fn encode_png(rgb: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, IMAGE_SIDE as u32, IMAGE_SIDE as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(rgb)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)?;
    Ok(png)
}

/// `dir/<stream>-<seq>/audio.wav` and `frame-0.png` … `frame-9.png`.
pub fn save_window(dir: &Path, window: &Window) -> std::io::Result<std::path::PathBuf> {
    let out = dir.join(format!("{}-{:05}", window.stream, window.seq));
    std::fs::create_dir_all(&out)?;
    write_wav(&out.join("audio.wav"), &window.audio)?;
    for (i, frame) in window.frames.iter().enumerate() {
        write_png(&out.join(format!("frame-{i}.png")), frame)?;
    }
    Ok(out)
}

/// Frames (224×224 RGB, one per second) as a lossless Matroska video: FFV1 codes RGB
/// exactly (through BGRx, a repacking), so decoding gives back the same pixels.
pub fn write_video(path: &Path, frames: &[std::sync::Arc<[u8]>]) -> Result<(), String> {
    gst::init().map_err(|e| format!("GStreamer cannot start: {e}"))?;
    let launch = "appsrc name=frames format=time ! videoconvert ! video/x-raw,format=BGRx \
        ! avenc_ffv1 ! matroskamux ! filesink name=file";
    let pipeline = gst::parse::launch(launch)
        .map_err(|e| {
            format!("cannot build the video writer (is gstreamer1.0-libav installed?): {e}")
        })?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the video writer is not a pipeline".to_string())?;
    let element = |name: &str| {
        pipeline
            .by_name(name)
            .ok_or_else(|| format!("the video writer has no element '{name}'"))
    };
    element("file")?.set_property("location", path.to_string_lossy().to_string());
    let source = element("frames")?
        .downcast::<gstreamer_app::AppSrc>()
        .map_err(|_| "'frames' is not an appsrc".to_string())?;
    let side = IMAGE_SIDE as i32;
    source.set_caps(Some(
        &gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", side)
            .field("height", side)
            .field("framerate", gst::Fraction::new(1, 1))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    ));
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the video writer: {e}"))?;
    for (i, frame) in frames.iter().enumerate() {
        let mut buffer = gst::Buffer::from_slice(frame.to_vec());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_seconds(i as u64));
            b.set_duration(gst::ClockTime::SECOND);
        }
        source
            .push_buffer(buffer)
            .map_err(|e| format!("the video writer refused a frame: {e:?}"))?;
    }
    let _ = source.end_of_stream();
    let result = super::wait_for_end(pipeline.upcast_ref(), 30)
        .map_err(|e| format!("cannot write the video: {e}"));
    let _ = pipeline.set_state(gst::State::Null);
    result
}
