//! Capture: GStreamer pipelines built from `pipelines/*.toml`, ending in two appsinks
//! (RGB 224×224 at 1 fps, F32 mono 48 kHz), each stream supervised and restarted on
//! failure, its windows handed to a bounded queue.

mod config;
pub mod decode;
pub mod devices;
mod drain;
mod error;
mod handoff;
mod metrics;
mod pipeline;
mod run;
mod save;
mod stream;

pub use config::{CaptureConfig, StreamConfig, StreamSpec};
pub use drain::{Drained, Until};
pub use error::CaptureError;
pub use handoff::{RecvTimeoutError, Tap, WindowReceiver, WindowSender, window_queue};
pub use metrics::StreamMetrics;
pub use pipeline::{AUDIO_SINK, PipelineFile, VIDEO_SINK, audio_tail, check_launch, video_tail};
pub use save::{encode_png, save_window, write_png, write_video, write_wav};
pub use stream::{StreamHandle, StreamState, StreamStats, spawn};

/// Wait for a playing pipeline's end of stream (or its first error) for up to `seconds`.
pub fn wait_for_end(pipeline: &gstreamer::Element, seconds: u64) -> Result<(), String> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    let bus = pipeline.bus().ok_or("pipeline without a bus")?;
    for message in bus.iter_timed(gst::ClockTime::from_seconds(seconds)) {
        match message.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(e) => return Err(e.error().to_string()),
            _ => {}
        }
    }
    Err(format!("no end of stream within {seconds} s"))
}
