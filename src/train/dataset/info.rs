//! `avscene dataset-info`: what a dataset holds — labels, recordings, 10 s clips, duration,
//! locations — and what is wrong with it, read with GStreamer's discoverer (headers only,
//! no decoding), so a large set is summarised in seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gstreamer_pbutils::Discoverer;
use serde::Serialize;

use super::{Clip, Dataset, DatasetError, Layout, Skip, list};
use crate::capture::decode::{Tracks, tracks};
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

fn discover(discoverer: &Discoverer, path: &Path) -> Result<Tracks, String> {
    let found = tracks(discoverer, &crate::capture::decode::file_uri(path)?)?;
    if !found.audio && !found.video {
        // What the discoverer makes of a file cut short, or of one that is no media.
        return Err(
            "cannot read: no sound or picture in it (truncated, or not a media file?)".into(),
        );
    }
    Ok(found)
}

/// A recording's usable length: both files read, sound and picture present.
fn usable_seconds(discoverer: &Discoverer, clip: &Clip) -> Result<f64, String> {
    let lacks = |what: &str| format!("no {what} track: avscene needs sound and picture");
    if clip.audio == clip.video {
        let media = discover(discoverer, &clip.video)?;
        return match media.missing() {
            Some(what) => Err(lacks(what)),
            None => Ok(media.seconds),
        };
    }
    let video =
        discover(discoverer, &clip.video).map_err(|e| format!("{}: {e}", clip.video.display()))?;
    let audio =
        discover(discoverer, &clip.audio).map_err(|e| format!("{}: {e}", clip.audio.display()))?;
    if !video.video {
        return Err(format!("{}: {}", clip.video.display(), lacks("video")));
    }
    if !audio.audio {
        return Err(format!("{}: {}", clip.audio.display(), lacks("audio")));
    }
    Ok(audio.seconds.min(video.seconds))
}

/// 10 s clips in `seconds` of a recording (a last clip short by up to 0.5 s is padded, as
/// the window code does).
fn clips_in(seconds: f64, cut: bool) -> usize {
    let tolerance = END_TOLERANCE as f64 / SAMPLE_RATE as f64;
    let whole = ((seconds + tolerance) / WINDOW_SECONDS).floor() as usize;
    if cut { whole } else { whole.min(1) }
}

/// A recording that passed the survey, with what training will get from it.
#[derive(Debug, Clone)]
pub struct Surveyed {
    pub clip: Clip,
    pub seconds: f64,
    /// 10 s clips.
    pub clips: usize,
}

/// A listing's recordings checked from their headers, before anything splits or decodes
/// them: files that are there, readable, with sound and picture, at least 10 s long. What
/// `dataset-info` reports and what `train` and `evaluate` use are this same survey, so
/// they cannot disagree, and training never decodes a file the survey flagged.
#[derive(Debug, Clone)]
pub struct Survey {
    pub layout: Layout,
    pub recordings: Vec<Surveyed>,
    /// The dataset's own evaluate list (TAU), surveyed alike.
    pub evaluation: Option<Vec<Surveyed>>,
    pub problems: Vec<Skip>,
}

impl Survey {
    pub fn of(root: &Path) -> Result<Survey, DatasetError> {
        let listing = list(root)?;
        let discoverer =
            crate::capture::decode::discoverer().map_err(|reason| DatasetError::Bad {
                file: root.to_path_buf(),
                reason,
            })?;
        let mut problems = listing.skipped.clone();
        let total = listing.recordings.len() + listing.evaluation.as_ref().map_or(0, Vec::len);
        let bar = crate::support::progress(total as u64, "reading");
        let mut check = |clips: Vec<Clip>| -> Vec<Surveyed> {
            let mut usable = Vec::new();
            for clip in clips {
                bar.inc(1);
                if let Some(missing) = [&clip.audio, &clip.video]
                    .into_iter()
                    .find(|p| !p.is_file())
                {
                    problems.push(Skip {
                        file: missing.display().to_string(),
                        reason: "listed but not there".into(),
                    });
                    continue;
                }
                let seconds = match usable_seconds(&discoverer, &clip) {
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
                usable.push(Surveyed {
                    clip,
                    seconds,
                    clips,
                });
            }
            usable
        };
        let recordings = check(listing.recordings);
        let evaluation = listing.evaluation.map(&mut check);
        bar.finish_and_clear();
        Ok(Survey {
            layout: listing.layout,
            recordings,
            evaluation,
            problems,
        })
    }
}

/// Summarise the dataset at `root`: the survey's figures and problems, and what training
/// would make of it.
pub fn inspect(root: &Path, seed: u64) -> Result<DatasetInfo, DatasetError> {
    let survey = Survey::of(root)?;
    let mut labels: BTreeMap<String, LabelInfo> = BTreeMap::new();
    let mut locations: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let all = survey
        .recordings
        .iter()
        .chain(survey.evaluation.iter().flatten());
    for s in all {
        let entry = labels.entry(s.clip.label.clone()).or_default();
        entry.recordings += 1;
        entry.clips += s.clips;
        entry.seconds += s.seconds;
        locations
            .entry(s.clip.label.clone())
            .or_default()
            .insert(s.clip.identifier.clone());
    }
    // A label folder whose every file was flagged still shows, with nothing usable.
    for problem in &survey.problems {
        if let Some(label) = label_of(root, &problem.file, survey.layout) {
            labels.entry(label).or_default();
        }
    }
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
    let layout = survey.layout;
    let problems = survey.problems.clone();
    let (split, cannot_train) = would_train(root, survey, seed, &mut notes);
    Ok(DatasetInfo {
        root: root.to_path_buf(),
        layout,
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

/// The label folder a flagged file of a folder-per-label set is in.
fn label_of(root: &Path, file: &str, layout: Layout) -> Option<String> {
    if layout != Layout::FolderPerLabel {
        return None;
    }
    let relative = Path::new(file).strip_prefix(root).ok()?;
    let mut parts = relative.components();
    let label = parts.next()?.as_os_str().to_str()?.to_string();
    parts.next().map(|_| label)
}

/// What training would find: its split, or why it cannot train; the dataset's notes are
/// added to `notes`.
fn would_train(
    root: &Path,
    survey: Survey,
    seed: u64,
    notes: &mut Vec<String>,
) -> (Option<String>, Option<String>) {
    match Dataset::from_survey(root, survey, seed) {
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
