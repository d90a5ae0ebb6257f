//! Why a stream's pipeline stopped: typed, naming the element and GStreamer's message and
//! debug text as the bus reports them (gstreamer-rs's `ErrorMessage`), so the supervisor,
//! the logs, `/health` and `record` all tell the same story.

use std::path::PathBuf;

/// One run of a stream's pipeline failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CaptureError {
    #[error("GStreamer cannot start: {0}")]
    Init(String),
    /// The launch description does not parse (a pipeline file the checks let through).
    #[error("invalid pipeline ({}): {message}", .file.display())]
    Launch { file: PathBuf, message: String },
    #[error("the pipeline has no '{0}' appsink")]
    MissingSink(&'static str),
    /// An element posted an error on the bus.
    #[error("{element}: {message}")]
    Element {
        /// The element's factory name (`v4l2src`), else its object name.
        element: String,
        message: String,
        /// GStreamer's debug text: logged at debug level, kept for the curious.
        debug: Option<String>,
    },
    #[error("the pipeline refused to start")]
    Refused,
    /// A live source reached its end of stream (a camera unplugged, an RTSP server that
    /// closed the session, a test source with num-buffers).
    #[error("the live source ended (end of stream)")]
    Ended,
    /// No audio or no video for `capture.stall_timeout_s`.
    #[error("stalled: no {what} for {seconds:.1} s (capture.stall_timeout_s = {limit})")]
    Stalled {
        what: &'static str,
        seconds: f64,
        limit: f64,
    },
}
