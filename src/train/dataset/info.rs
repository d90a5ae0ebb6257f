//! `avscene dataset-info`: what a dataset holds — labels, recordings, 10 s clips, duration,
//! locations — and what is wrong with it, read with GStreamer's discoverer (headers only,
//! no decoding), so a large set is summarised in seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gstreamer_pbutils::Discoverer;
use serde::Serialize;

use super::{Clip, Dataset, DatasetError, Layout, Skip, list};
use crate::features::{SAMPLE_RATE, WINDOW_SECONDS};
use crate::window::END_TOLERANCE;

/// One label's share of the dataset.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LabelInfo {
    pub recordings: usize,
    /// 10 s clips training will cut from them.
    pub clips: usize,
    pub seconds: f64,
    pub locations: usize,
}

/// The summary `dataset-info` prints.
#[derive(Debug, Serialize)]
pub struct DatasetInfo {
    pub root: PathBuf,
    pub layout: Layout,
    pub labels: BTreeMap<String, LabelInfo>,
    pub recordings: usize,
    pub clips: usize,
    pub seconds: f64,
    /// How training would split it.
    pub split: Option<String>,
    /// Why it cannot train, if it cannot.
    pub cannot_train: Option<String>,
    /// Files and folders left out, with the reason.
    pub problems: Vec<Skip>,
    /// Warnings about the set as a whole.
    pub notes: Vec<String>,
}

/// What the discoverer says about one file.
struct Media {
    seconds: f64,
    audio: bool,
    video: bool,
}

fn discover(discoverer: &Discoverer, path: &Path) -> Result<Media, String> {
    let uri = crate::capture::decode::file_uri(path)?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(Media {
        seconds: info
            .duration()
            .map(|d| d.nseconds() as f64 / 1e9)
            .unwrap_or(0.0),
        audio: !info.audio_streams().is_empty(),
        video: !info.video_streams().is_empty(),
    })
}

/// A recording's usable length: both files read, sound and picture present.
fn usable_seconds(discoverer: &Discoverer, clip: &Clip) -> Result<f64, String> {
    let video = discover(discoverer, &clip.video)?;
    let audio = if clip.audio == clip.video {
        None
    } else {
        Some(
            discover(discoverer, &clip.audio)
                .map_err(|e| format!("{}: {e}", clip.audio.display()))?,
        )
    };
    if !video.video {
        return Err("no video track".into());
    }
    match &audio {
        Some(a) if !a.audio => Err(format!("{}: no audio track", clip.audio.display())),
        None if !video.audio => Err("no audio track".into()),
        Some(a) => Ok(a.seconds.min(video.seconds)),
        None => Ok(video.seconds),
    }
}

/// 10 s clips in `seconds` of a recording (a last clip short by up to 0.5 s is padded, as
/// the window code does).
fn clips_in(seconds: f64, cut: bool) -> usize {
    let tolerance = END_TOLERANCE as f64 / SAMPLE_RATE as f64;
    let whole = ((seconds + tolerance) / WINDOW_SECONDS).floor() as usize;
    if cut { whole } else { whole.min(1) }
}

/// Summarise the dataset at `root`.
pub fn inspect(root: &Path, seed: u64) -> Result<DatasetInfo, DatasetError> {
    let listing = list(root)?;
    let bad = |reason: String| DatasetError::Bad {
        file: root.to_path_buf(),
        reason,
    };
    gstreamer::init().map_err(|e| bad(format!("GStreamer cannot start: {e}")))?;
    let discoverer = Discoverer::new(gstreamer::ClockTime::from_seconds(15))
        .map_err(|e| bad(format!("GStreamer's discoverer cannot start: {e}")))?;
    let mut problems = listing.skipped.clone();
    let mut labels: BTreeMap<String, LabelInfo> = BTreeMap::new();
    let mut locations: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut all = listing.recordings.clone();
    all.extend(listing.evaluation.clone().unwrap_or_default());
    let bar = crate::support::progress(all.len() as u64, "reading");
    for clip in &all {
        bar.inc(1);
        let entry = labels.entry(clip.label.clone()).or_default();
        let seconds = match usable_seconds(&discoverer, clip) {
            Ok(s) => s,
            Err(reason) => {
                problems.push(Skip {
                    file: clip.name(),
                    reason,
                });
                continue;
            }
        };
        let clips = clips_in(seconds, clip.cut);
        if clips == 0 {
            problems.push(Skip {
                file: clip.name(),
                reason: format!("shorter than 10 s ({seconds:.1} s): no clip"),
            });
            continue;
        }
        entry.recordings += 1;
        entry.clips += clips;
        entry.seconds += seconds;
        locations
            .entry(clip.label.clone())
            .or_default()
            .insert(clip.identifier.clone());
    }
    bar.finish_and_clear();
    let mut notes = Vec::new();
    for (label, info) in labels.iter_mut() {
        info.locations = locations.get(label).map_or(0, BTreeSet::len);
        if info.clips == 0 {
            notes.push(format!("label '{label}': no usable clip"));
        } else if info.clips < super::FEW_CLIPS {
            notes.push(format!(
                "label '{label}': only {} clip(s) of 10 s: record a few minutes of it",
                info.clips
            ));
        }
    }
    let (split, cannot_train) = would_train(root, seed, &mut notes);
    Ok(DatasetInfo {
        root: root.to_path_buf(),
        layout: listing.layout,
        recordings: labels.values().map(|l| l.recordings).sum(),
        clips: labels.values().map(|l| l.clips).sum(),
        seconds: labels.values().map(|l| l.seconds).sum(),
        labels,
        split,
        cannot_train,
        problems,
        notes,
    })
}

/// What training would find: its split, or why it cannot train; the dataset's notes are
/// added to `notes`.
fn would_train(
    root: &Path,
    seed: u64,
    notes: &mut Vec<String>,
) -> (Option<String>, Option<String>) {
    match Dataset::open(root, seed) {
        Ok(dataset) => match dataset.check_trainable() {
            Err(e) => (None, Some(e.to_string())),
            Ok(()) => {
                notes.extend(dataset.notes.iter().cloned());
                let mut split = format!(
                    "{}: {} training and {} validation recordings",
                    dataset.split,
                    dataset.train.len(),
                    dataset.validation.len()
                );
                if dataset.evaluation_listed {
                    split.push_str(&format!(
                        "; evaluate scores the {} of fold1_evaluate.csv",
                        dataset.evaluation.len()
                    ));
                }
                (Some(split), None)
            }
        },
        Err(e) => (None, Some(e.to_string())),
    }
}
