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
        /// GStreamer's resource error code, when it is one (not found, cannot open, …).
        kind: Option<gstreamer::ResourceError>,
    },
    /// A networked or file source (one with a `uri`) failed: which, and how.
    #[error("{element}: {uri}: {problem} ({message})")]
    Source {
        element: String,
        /// The source's URI, credentials replaced by `***`.
        uri: String,
        problem: SourceProblem,
        message: String,
        debug: Option<String>,
    },
    #[error("the pipeline refused to start")]
    Refused,
    /// A file without sound or without picture: it can never give a window.
    #[error("{uri}: the file has no {missing} track; avscene needs sound and picture")]
    MissingTrack { uri: String, missing: &'static str },
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

impl CaptureError {
    /// Whether `other` is the same failure again (a stall's measured seconds aside), so
    /// the log can count a repeat instead of printing it again.
    pub fn same_failure(&self, other: &CaptureError) -> bool {
        match (self, other) {
            (Self::Stalled { what: a, .. }, Self::Stalled { what: b, .. }) => a == b,
            _ => self.to_string() == other.to_string(),
        }
    }
}

/// How a source with a URI failed, as far as GStreamer's error and the run tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SourceProblem {
    /// The server answered that the path (or the file) is not there.
    #[error("not found")]
    NotFound,
    /// No connection before anything arrived: nothing listens there, or it is
    /// unreachable.
    #[error("cannot connect (connection refused or unreachable)")]
    CannotConnect,
    /// It delivered, then the connection was lost.
    #[error("connection lost")]
    Lost,
    /// Any other failure of the source.
    #[error("failed")]
    Failed,
}

/// The `uri=` a launch description gives its source, credentials replaced by `***`.
pub fn source_uri(launch: &str) -> Option<String> {
    let start = launch.find("uri=")? + 4;
    let rest = &launch[start..];
    let uri = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split_whitespace().next()?,
    };
    Some(redact(uri))
}

/// `rtsp://user:pass@host/x` → `rtsp://***@host/x`.
fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_comes_out_of_the_launch_without_credentials() {
        let launch = "uridecodebin uri=rtsp://admin:s3cret@cam.lan:554/live name=src src. ! queue";
        assert_eq!(source_uri(launch).unwrap(), "rtsp://***@cam.lan:554/live");
        let quoted = "uridecodebin uri=\"file:///a b.mp4\" name=src";
        assert_eq!(source_uri(quoted).unwrap(), "file:///a b.mp4");
        assert_eq!(source_uri("v4l2src device=/dev/video0"), None);
        assert_eq!(
            redact("http://h/p@q"),
            "http://h/p@q",
            "an @ in the path is no login"
        );
    }
}
