//! Datasets, in two layouts:
//! - TAU Urban Audio-Visual Scenes 2021 (`tau`): `audio/*.wav`, `video/*.mp4`, `meta.csv`
//!   and `evaluation_setup/fold1_{train,evaluate}.csv`; each clip's first 10 s is used.
//! - Folder per label (`folders`): `DIR/<label>/*` media files of any length, cut into
//!   consecutive 10 s clips; what `avscene record` writes.
//!
//! Training picks its best epoch on a validation split held out of the training recordings
//! by location (the `identifier`), so no location is on both sides — never on the list the
//! scores are reported on. TAU: about a tenth of each label's locations of
//! `fold1_train.csv` (the authors held out 739 of its 8 646 clips), and `evaluate` scores
//! `fold1_evaluate.csv`. Folder per label: about a fifth, and the same split is what
//! `evaluate` scores (there is no separate evaluation list). When a location split leaves
//! nothing to validate on (every label recorded in one place) the last share of each
//! label's recordings in time order is held out, and the dataset says so.

mod folders;
mod info;
mod tau;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::support::{SplitMix, fnv1a};
pub use folders::{MEDIA_EXTENSIONS, RECORDINGS};
pub use info::{DatasetInfo, LabelInfo, Survey, Surveyed, inspect};

/// Fewer 10 s clips of a label than this earn a warning: too little to learn a scene from.
pub const FEW_CLIPS: usize = 3;

/// One labelled recording: a TAU clip, or a file of any length cut into clips.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// The sound: a WAV file, or the same file as `video` (one container with both).
    pub audio: PathBuf,
    pub video: PathBuf,
    pub label: String,
    /// The recording location (`lisbon-1000`; `<stream>-<day>` for recorded clips).
    pub identifier: String,
    /// Cut the whole file into consecutive 10 s clips; otherwise its first 10 s (TAU).
    pub cut: bool,
}

impl Clip {
    /// The file named in messages about this recording.
    pub fn name(&self) -> String {
        self.audio.display().to_string()
    }
}

/// A recording or folder left out, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skip {
    pub file: String,
    pub reason: String,
}

/// The dataset's layout on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    Tau,
    FolderPerLabel,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Tau => "TAU",
            Layout::FolderPerLabel => "folder-per-label",
        })
    }
}

/// How the validation recordings were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// A share of each label's locations held out.
    Location,
    /// Every label has a single location: the last share of each label's recordings.
    Time,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Location => "split by location",
            Split::Time => "split by time (one location per label)",
        })
    }
}

/// How much of each label's locations (or recordings) the validation split holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// About a tenth, at least one: the authors' share of the TAU training list.
    Tenth,
    /// About a fifth, at least one: small sets of one's own recordings.
    Fifth,
}

impl Share {
    /// Of `n` locations (two or more), how many to hold out.
    pub fn of(self, n: usize) -> usize {
        let held = match self {
            Share::Tenth => (n as f64 / 10.0).round() as usize,
            Share::Fifth => n.div_ceil(5),
        };
        held.clamp(1, n.saturating_sub(1).max(1))
    }
}

/// A dataset opened for training or evaluation.
#[derive(Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    /// Sorted labels of the training split.
    pub classes: Vec<String>,
    pub train: Vec<Clip>,
    /// Held out of the training recordings: picks the best epoch.
    pub validation: Vec<Clip>,
    pub split: Split,
    /// What `evaluate` scores: `fold1_evaluate.csv` (TAU), else the validation split.
    pub evaluation: Vec<Clip>,
    /// Whether `evaluation` is the dataset's own list rather than the validation split.
    pub evaluation_listed: bool,
    pub skipped: Vec<Skip>,
    /// Warnings about the whole set (a label that cannot be validated, the time split).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(
        "{}: not a dataset: neither meta.csv (the TAU Urban Audio-Visual Scenes layout) nor label folders (<label>/<media files>)", .0.display()
    )]
    NotFound(PathBuf),
    #[error("{file}: {reason}")]
    Bad { file: PathBuf, reason: String },
    #[error("{0}: no usable clips in this split")]
    Empty(String),
}

/// A tab-separated file with a header that has `required`: rows as column → value.
fn read_table(path: &Path, required: &str) -> Result<Vec<HashMap<String, String>>, DatasetError> {
    let bad = |reason: String| DatasetError::Bad {
        file: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| bad("empty file".into()))?
        .split('\t')
        .map(|h| h.trim().to_string())
        .collect();
    if !header.iter().any(|h| h == required) {
        return Err(bad(format!(
            "the header has no {required} column (found: {}); is it tab-separated?",
            header.join(", ")
        )));
    }
    Ok(lines
        .map(|line| {
            header
                .iter()
                .cloned()
                .zip(line.split('\t').map(|v| v.trim().to_string()))
                .collect()
        })
        .collect())
}

/// What a layout reader found: the recordings to train on, the evaluate list if the
/// dataset has one, and what it left out.
pub struct Listing {
    pub layout: Layout,
    pub recordings: Vec<Clip>,
    pub evaluation: Option<Vec<Clip>>,
    pub skipped: Vec<Skip>,
}

/// Read `root` in whichever layout it has, without splitting.
pub fn list(root: &Path) -> Result<Listing, DatasetError> {
    if root.join("meta.csv").is_file() {
        tau::read(root)
    } else if root.is_dir() {
        folders::read(root)
    } else {
        Err(DatasetError::NotFound(root.to_path_buf()))
    }
}

impl Dataset {
    /// Open `root` in whichever layout it has; `seed` picks the validation locations.
    pub fn open(root: &Path, seed: u64) -> Result<Dataset, DatasetError> {
        Dataset::from_survey(root, Survey::of(root)?, seed)
    }

    /// The dataset a survey found usable, split.
    pub fn from_survey(root: &Path, survey: Survey, seed: u64) -> Result<Dataset, DatasetError> {
        let clips = |s: Vec<Surveyed>| -> Vec<Clip> { s.into_iter().map(|s| s.clip).collect() };
        let layout = survey.layout;
        let recordings = clips(survey.recordings);
        let evaluate_list = survey.evaluation.map(clips);
        let mut skipped = survey.problems;
        let share = match layout {
            Layout::Tau => Share::Tenth,
            Layout::FolderPerLabel => Share::Fifth,
        };
        let (train, validation, split) = split(recordings, seed, share);
        let classes: Vec<String> = train
            .iter()
            .map(|c| c.label.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let known = |clips: Vec<Clip>, skipped: &mut Vec<Skip>| -> Vec<Clip> {
            clips
                .into_iter()
                .filter(|c| {
                    let known = classes.contains(&c.label);
                    if !known {
                        skipped.push(Skip {
                            file: c.name(),
                            reason: format!(
                                "unknown label '{}' (not in the training split)",
                                c.label
                            ),
                        });
                    }
                    known
                })
                .collect()
        };
        let validation = known(validation, &mut skipped);
        let (evaluation, evaluation_listed) = match evaluate_list {
            Some(list) => (known(list, &mut skipped), true),
            None => (validation.clone(), false),
        };
        if train.is_empty() {
            let first = skipped
                .first()
                .map(|s| format!("; first: {}: {}", s.file, s.reason))
                .unwrap_or_default();
            return Err(DatasetError::Empty(format!(
                "{} (training; {} skipped{first})",
                root.display(),
                skipped.len()
            )));
        }
        if validation.is_empty() {
            let why = "validation: every label has a single recording; record more";
            return Err(DatasetError::Empty(format!("{} ({why})", root.display())));
        }
        if evaluation_listed && evaluation.is_empty() {
            let why = "evaluation: fold1_evaluate.csv lists none of the training labels";
            return Err(DatasetError::Empty(format!("{} ({why})", root.display())));
        }
        let notes = notes(&classes, &train, &validation, split);
        Ok(Dataset {
            root: root.to_path_buf(),
            layout,
            classes,
            train,
            validation,
            split,
            evaluation,
            evaluation_listed,
            skipped,
            notes,
        })
    }
}

impl Dataset {
    /// Training needs two labels at least: with one, every answer is that label.
    pub fn check_trainable(&self) -> Result<(), DatasetError> {
        if self.classes.len() < 2 {
            return Err(DatasetError::Bad {
                file: self.root.clone(),
                reason: format!(
                    "only one label ({}): a scene classifier needs two at least; record another scene",
                    self.classes.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// Warnings a user should read before trusting the validation scores.
fn notes(classes: &[String], train: &[Clip], validation: &[Clip], split: Split) -> Vec<String> {
    let mut notes = Vec::new();
    if split == Split::Time {
        notes.push(
            "every label was recorded at a single location: validation holds the last share of \
             each label's recordings, which resemble the training ones, so its scores are \
             optimistic; record each scene on another day (or with another stream) for an \
             honest split"
                .to_string(),
        );
    }
    for label in classes {
        let count = |clips: &[Clip]| clips.iter().filter(|c| c.label == *label).count();
        let (t, v) = (count(train), count(validation));
        if v == 0 {
            notes.push(format!(
                "label '{label}': {t} recording(s), none held out for validation (one location \
                 or one file): it is trained on but not scored"
            ));
        }
    }
    notes
}

/// Split by location, or by time when no location can be held out.
fn split(clips: Vec<Clip>, seed: u64, share: Share) -> (Vec<Clip>, Vec<Clip>, Split) {
    let (train, validation) = split_by_location(clips.clone(), seed, share);
    if !validation.is_empty() {
        return (train, validation, Split::Location);
    }
    let (train, validation) = split_by_time(clips, share);
    (train, validation, Split::Time)
}

/// Hold out the last share (at least one) of each label's recordings in name order, which
/// is time order for recorded clips; labels with one recording stay in training.
pub fn split_by_time(clips: Vec<Clip>, share: Share) -> (Vec<Clip>, Vec<Clip>) {
    let mut by_label: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for c in &clips {
        by_label
            .entry(c.label.clone())
            .or_default()
            .push(c.audio.clone());
    }
    let mut held: BTreeSet<PathBuf> = BTreeSet::new();
    for mut names in by_label.into_values() {
        if names.len() < 2 {
            continue;
        }
        names.sort();
        let n = share.of(names.len());
        held.extend(names.split_off(names.len() - n));
    }
    clips.into_iter().partition(|c| !held.contains(&c.audio))
}

/// Hold out a share of each label's locations (at least one, when a label has two or
/// more); a label's location is wholly on one side. Locations count per label: one stream
/// on one day may have recorded several scenes.
pub fn split_by_location(clips: Vec<Clip>, seed: u64, share: Share) -> (Vec<Clip>, Vec<Clip>) {
    let mut by_label: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in &clips {
        by_label.entry(&c.label).or_default().insert(&c.identifier);
    }
    let mut held: BTreeSet<(String, String)> = BTreeSet::new();
    for (label, locations) in &by_label {
        if locations.len() < 2 {
            continue;
        }
        let mut order: Vec<(u64, &str)> = locations
            .iter()
            .map(|l| (SplitMix(seed ^ fnv1a(l.as_bytes())).next_u64(), *l))
            .collect();
        order.sort();
        let n = share.of(locations.len());
        held.extend(
            order
                .iter()
                .take(n)
                .map(|(_, l)| (label.to_string(), l.to_string())),
        );
    }
    clips
        .into_iter()
        .partition(|c| !held.contains(&(c.label.clone(), c.identifier.clone())))
}
