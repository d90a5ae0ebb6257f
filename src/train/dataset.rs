//! Datasets in the TAU Urban Audio-Visual Scenes 2021 layout: `audio/*.wav`,
//! `video/*.mp4`, `meta.csv` and `evaluation_setup/fold1_{train,evaluate,test}.csv`, all
//! tab-separated with a header row. Without an evaluate list the training list is split by
//! recording location (the `identifier`), so no location is on both sides.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::synth::SplitMix;
pub use crate::model::fnv1a;

/// One labelled clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub audio: PathBuf,
    pub video: PathBuf,
    pub label: String,
    /// The recording location (`lisbon-1000`).
    pub identifier: String,
}

/// A clip left out, and why.
#[derive(Debug, Clone)]
pub struct Skip {
    pub file: String,
    pub reason: String,
}

/// A dataset opened for training or evaluation.
#[derive(Debug)]
pub struct Dataset {
    pub root: PathBuf,
    /// Sorted labels of the training split.
    pub classes: Vec<String>,
    pub train: Vec<Clip>,
    pub validation: Vec<Clip>,
    /// Whether `validation` came from `fold1_evaluate.csv` (else: a location split).
    pub validation_listed: bool,
    pub skipped: Vec<Skip>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(
        "{0}: not found (a TAU Urban Audio-Visual Scenes dataset has meta.csv, audio/, video/ and evaluation_setup/)"
    )]
    NoMeta(PathBuf),
    #[error("{file}: {reason}")]
    Bad { file: PathBuf, reason: String },
    #[error("{0}: no usable clips in this split")]
    Empty(String),
}

/// A tab-separated file with a header: rows as column → value.
fn read_table(path: &Path) -> Result<Vec<HashMap<String, String>>, DatasetError> {
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
    if !header.iter().any(|h| h == "filename_audio") {
        return Err(bad(format!(
            "the header has no filename_audio column (found: {}); is it tab-separated?",
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

impl Dataset {
    /// Open `root`; `seed` picks the validation locations when no evaluate list exists.
    pub fn open(root: &Path, seed: u64) -> Result<Dataset, DatasetError> {
        let meta_path = root.join("meta.csv");
        if !meta_path.is_file() {
            return Err(DatasetError::NoMeta(meta_path));
        }
        let mut skipped = Vec::new();
        // meta.csv: every clip's label and location, by audio file name.
        let mut meta: HashMap<String, Clip> = HashMap::new();
        for row in read_table(&meta_path)? {
            let audio = row.get("filename_audio").cloned().unwrap_or_default();
            let video = row.get("filename_video").cloned().unwrap_or_default();
            let label = row.get("scene_label").cloned().unwrap_or_default();
            if audio.is_empty() || label.is_empty() {
                skipped.push(Skip {
                    file: format!("meta.csv: {audio}"),
                    reason: "a row without filename_audio or scene_label".into(),
                });
                continue;
            }
            let identifier = row
                .get("identifier")
                .cloned()
                .unwrap_or_else(|| location_from_name(&audio));
            let clip = Clip {
                audio: root.join(&audio),
                video: root.join(&video),
                label,
                identifier,
            };
            meta.insert(audio, clip);
        }
        let setup = root.join("evaluation_setup");
        let listed =
            |name: &str, skipped: &mut Vec<Skip>| -> Result<Option<Vec<Clip>>, DatasetError> {
                let path = setup.join(name);
                if !path.is_file() {
                    return Ok(None);
                }
                let mut clips = Vec::new();
                for row in read_table(&path)? {
                    let audio = row.get("filename_audio").cloned().unwrap_or_default();
                    match meta.get(&audio) {
                        Some(clip) => clips.push(clip.clone()),
                        None => skipped.push(Skip {
                            file: format!("{name}: {audio}"),
                            reason: "not in meta.csv".into(),
                        }),
                    }
                }
                Ok(Some(clips))
            };
        let train_list = listed("fold1_train.csv", &mut skipped)?;
        let evaluate_list = listed("fold1_evaluate.csv", &mut skipped)?;
        let mut all: Vec<Clip> = train_list.unwrap_or_else(|| {
            let mut clips: Vec<Clip> = meta.values().cloned().collect();
            clips.sort_by(|a, b| a.audio.cmp(&b.audio));
            clips
        });
        all.retain(|c| exists(c, &mut skipped));
        let validation_listed = evaluate_list.is_some();
        let (train, mut validation) = match evaluate_list {
            Some(v) => (all, v),
            None => split_by_location(all, seed),
        };
        validation.retain(|c| exists(c, &mut skipped));
        let classes: Vec<String> = train
            .iter()
            .map(|c| c.label.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        validation.retain(|c| {
            let known = classes.contains(&c.label);
            if !known {
                skipped.push(Skip {
                    file: c.audio.display().to_string(),
                    reason: format!("unknown label '{}' (not in the training split)", c.label),
                });
            }
            known
        });
        if train.is_empty() {
            return Err(DatasetError::Empty(format!(
                "{} (training)",
                root.display()
            )));
        }
        if validation.is_empty() {
            return Err(DatasetError::Empty(format!(
                "{} (validation)",
                root.display()
            )));
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            classes,
            train,
            validation,
            validation_listed,
            skipped,
        })
    }
}

fn exists(clip: &Clip, skipped: &mut Vec<Skip>) -> bool {
    for path in [&clip.audio, &clip.video] {
        if !path.is_file() {
            skipped.push(Skip {
                file: path.display().to_string(),
                reason: "listed but not there".into(),
            });
            return false;
        }
    }
    true
}

/// `airport-lisbon-1000-40000-0-a.wav` → `lisbon-1000`.
fn location_from_name(audio: &str) -> String {
    let stem = Path::new(audio)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let parts: Vec<&str> = stem.split('-').collect();
    parts.get(1..3).map(|p| p.join("-")).unwrap_or(stem)
}

/// Hold out about a fifth of each class's locations (at least one, when a class has two
/// or more); a location is wholly on one side.
pub fn split_by_location(clips: Vec<Clip>, seed: u64) -> (Vec<Clip>, Vec<Clip>) {
    let mut by_label: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in &clips {
        by_label.entry(&c.label).or_default().insert(&c.identifier);
    }
    let mut held: BTreeSet<String> = BTreeSet::new();
    for locations in by_label.values() {
        if locations.len() < 2 {
            continue;
        }
        let mut order: Vec<(u64, &str)> = locations
            .iter()
            .map(|l| (SplitMix(seed ^ fnv1a(l.as_bytes())).next_u64(), *l))
            .collect();
        order.sort();
        let n = locations.len().div_ceil(5);
        held.extend(order.iter().take(n).map(|(_, l)| l.to_string()));
    }
    clips
        .into_iter()
        .partition(|c| !held.contains(&c.identifier))
}
