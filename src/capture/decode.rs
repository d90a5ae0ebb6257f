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
    decode(FILE_PIPELINE, &[("uri", file_uri(file)?)], None, 1.0)
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
