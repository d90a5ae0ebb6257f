//! Writing a window to disk as the model sees it: the audio as a 32-bit float WAV and
//! each frame as a PNG.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::window::{FRAME_SIDE, SAMPLE_RATE, Window};

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
    let file = BufWriter::new(File::create(path)?);
    let mut encoder = png::Encoder::new(file, FRAME_SIDE as u32, FRAME_SIDE as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(rgb)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)
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
