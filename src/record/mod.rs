//! Recording labelled clips for training: the dataset's clip format (`clip.rs`, shared
//! with `avscene record`) and the running daemon's recorder (`recorder.rs`), which takes
//! clips from the windows its streams already make — asked for from the status page or
//! over MQTT, without stopping the service.

mod clip;
mod recorder;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::problems::Problems;

pub use clip::{
    ClipError, MAX_MINUTES, RECORDINGS, check_label, check_minutes, clips_in_minutes, gap_in,
    write_clip,
};
pub use recorder::{Phase, RecordAction, RecordRequest, Recorder, RecordingState, RequestError};

/// `[record]` settings: where the daemon's recordings go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// The dataset folder (folder-per-label layout) recordings are added to; unset: the
    /// service's state directory (`$STATE_DIRECTORY/dataset`, /var/lib/avscene/dataset),
    /// else `~/.local/share/avscene/dataset` (see [`crate::support::state_dir`]). Relative paths are taken from the
    /// configuration file's folder.
    pub dataset: Option<PathBuf>,
}

impl RecordConfig {
    /// The dataset folder (a relative `dataset` is resolved when the file is loaded).
    pub fn dataset_dir(&self) -> PathBuf {
        if let Some(dir) = &self.dataset {
            return dir.clone();
        }
        crate::support::state_dir().join("dataset")
    }

    pub fn validate(&self, problems: &mut Problems) {
        if let Some(dir) = &self.dataset {
            if dir.as_os_str().is_empty() {
                problems.push("record.dataset", "must not be empty when set");
            } else if dir.is_file() {
                problems.push(
                    "record.dataset",
                    format!("{} is a file, not a folder", dir.display()),
                );
            }
        }
    }
}
