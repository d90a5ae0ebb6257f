//! Capture: GStreamer pipelines built from `pipelines/*.toml`, ending in two appsinks
//! (RGB 224×224 at 1 fps, F32 mono 48 kHz), each stream supervised and restarted on
//! failure, its windows handed to a bounded queue.

mod config;
mod handoff;
mod pipeline;
mod save;
mod stream;

pub use config::{CaptureConfig, StreamConfig, StreamSpec};
pub use handoff::{WindowSender, window_queue};
pub use pipeline::{AUDIO_SINK, AUDIO_TAIL, PipelineFile, VIDEO_SINK, VIDEO_TAIL, check_launch};
pub use save::{save_window, write_png, write_wav};
pub use stream::{StreamHandle, StreamState, StreamStats, spawn};
