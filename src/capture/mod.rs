//! Capture: GStreamer pipelines built from `pipelines/*.toml`, ending in two appsinks
//! (RGB 224×224 at 1 fps, F32 mono 48 kHz).

mod config;
mod pipeline;

pub use config::{StreamConfig, StreamSpec};
pub use pipeline::{AUDIO_SINK, AUDIO_TAIL, PipelineFile, VIDEO_SINK, VIDEO_TAIL, check_launch};
