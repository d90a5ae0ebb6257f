//! Decoding media files through the live capture path (non-live, as fast as the decoder
//! goes; a window waits for all its frames, so a file gives the same windows on every
//! run): for `classify`, for training's feature extraction, for `dataset-info`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CaptureConfig, Drained, PipelineFile, StreamSpec, Until, spawn, window_queue};
use crate::window::{Window, WindowConfig};

/// A file's `file://` URI, for GStreamer; the error names the file.
pub fn file_uri(path: &Path) -> Result<String, String> {
    let absolute = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    gstreamer::glib::filename_to_uri(&absolute, None)
        .map(|u| u.to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// What GStreamer's discoverer reads of a file's headers (no decoding).
#[derive(Debug, Clone, Copy)]
pub struct Tracks {
    pub seconds: f64,
    pub audio: bool,
    pub video: bool,
}

impl Tracks {
    /// The track a model input needs that the file lacks, if one.
    pub fn missing(&self) -> Option<&'static str> {
        match (self.audio, self.video) {
            (true, true) => None,
            (false, true) => Some("audio"),
            (true, false) => Some("video"),
            (false, false) => Some("audio or video"),
        }
    }
}

/// The tracks and length of the media at `uri`, from its headers.
pub fn tracks(discoverer: &gstreamer_pbutils::Discoverer, uri: &str) -> Result<Tracks, String> {
    let info = discoverer
        .discover_uri(uri)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(Tracks {
        seconds: info
            .duration()
            .map(|d| d.nseconds() as f64 / 1e9)
            .unwrap_or(0.0),
        audio: !info.audio_streams().is_empty(),
        video: !info.video_streams().is_empty(),
    })
}

/// A discoverer that gives up on a file after 15 s.
pub fn discoverer() -> Result<gstreamer_pbutils::Discoverer, String> {
    gstreamer::init().map_err(|e| format!("GStreamer cannot start: {e}"))?;
    gstreamer_pbutils::Discoverer::new(gstreamer::ClockTime::from_seconds(15))
        .map_err(|e| format!("GStreamer's discoverer cannot start: {e}"))
}

/// A media file with sound and picture in one container (mp4, mkv, webm, …).
pub const FILE_PIPELINE: &str = r#"
description = "media file"
live = false
loop = false
realtime = false
[source]
shared = "uridecodebin uri=${uri} name=src"
video = "src."
audio = "src."
"#;

/// Decode a media file into all its 10 s windows (a second apart).
pub fn decode_file(file: &Path) -> Result<Vec<Window>, String> {
    let uri = file_uri(file)?;
    // A file without sound or picture: said plainly, before any decoding.
    if let Some(missing) = discoverer()
        .and_then(|d| tracks(&d, &uri))
        .ok()
        .and_then(|t| t.missing())
    {
        return Err(format!(
            "no {missing} track; avscene needs sound and picture"
        ));
    }
    decode(FILE_PIPELINE, &[("uri", uri)], None, 1.0)
}

/// Run a built-in pipeline file through the capture path until `limit` windows or the
/// end; at least one window, or the reason there is none.
pub fn decode(
    pipeline: &str,
    params: &[(&str, String)],
    limit: Option<usize>,
    hop_s: f64,
) -> Result<Vec<Window>, String> {
    let file: PipelineFile = toml::from_str(pipeline).map_err(|e| e.to_string())?;
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let launch = file
        .launch_description(&params, false)
        .map_err(|e| e.join("; "))?;
    let spec = StreamSpec {
        name: "file".into(),
        pipeline_file: PathBuf::from("(built in)"),
        description: file.description.clone(),
        live: false,
        looping: false,
        realtime: false,
        launch,
        quiet: true,
    };
    let (tx, rx) = window_queue(1024);
    let windows = WindowConfig {
        hop_s,
        ..WindowConfig::default()
    };
    let handle = spawn(spec, CaptureConfig::default(), windows, tx);
    // A long file may decode for many minutes: give up only when no window comes for long.
    let until = Until {
        failure: true,
        idle: Some(Duration::from_secs(300)),
        ..Until::default()
    };
    let mut windows = Vec::new();
    let drained = handle.drain(&rx, until, |window| {
        windows.push(window);
        match limit {
            Some(l) if windows.len() >= l => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    });
    let last_error = handle.stats.last_error();
    handle.stop();
    match drained {
        Drained::Failed(reason) => return Err(format!("cannot decode: {reason}")),
        Drained::Idle(idle) => {
            return Err(format!(
                "decoding stalled: no 10 s window in {} s",
                idle.as_secs()
            ));
        }
        Drained::Ended | Drained::Stopped => {}
    }
    if windows.is_empty() {
        return Err(match last_error {
            Some(e) => format!("cannot decode: {e}"),
            None => "shorter than 10 s: no full window".to_string(),
        });
    }
    Ok(windows)
}
