//! The folder-per-label layout: `DIR/<label>/…` holds media files of any length — one
//! container with sound and picture (mp4, mkv, webm, …), or a WAV beside a video of the
//! same name — each cut into consecutive 10 s clips. `DIR/recordings.csv`, written by
//! `avscene record`, gives recorded clips their location (`<stream>-<day>`); any other file
//! is its own location. Moving a file to another label folder relabels it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{Clip, DatasetError, Layout, Listing, Skip, read_table};

/// Containers read as one file with sound and picture.
pub const MEDIA_EXTENSIONS: &[&str] = &["mp4", "m4v", "mov", "mkv", "webm", "avi", "ogv"];

/// The metadata `avscene record` keeps beside the label folders: the columns of TAU's
/// `meta.csv` plus the stream, start time and gaps of each clip.
pub use crate::record::RECORDINGS;

/// A file's extension, lower case.
fn extension(file: &Path) -> String {
    file.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// A label folder's files by name without extension — a WAV and a video of the same
/// name are one recording: (the WAV, the videos). Other files are skipped, with why.
fn by_stem(
    files: Vec<PathBuf>,
    skipped: &mut Vec<Skip>,
) -> BTreeMap<PathBuf, (Option<PathBuf>, Vec<PathBuf>)> {
    let mut by_stem: BTreeMap<PathBuf, (Option<PathBuf>, Vec<PathBuf>)> = BTreeMap::new();
    for file in files {
        let extension = extension(&file);
        let entry = by_stem.entry(file.with_extension("")).or_default();
        if extension == "wav" {
            entry.0 = Some(file);
        } else if MEDIA_EXTENSIONS.contains(&extension.as_str()) {
            entry.1.push(file);
        } else {
            skipped.push(Skip {
                file: file.display().to_string(),
                reason: format!(
                    "not a media file avscene reads (wav with a video of the same name, or {})",
                    MEDIA_EXTENSIONS.join(", ")
                ),
            });
        }
    }
    by_stem
}

/// Media dropped beside the label folders: it has no label.
fn loose_media(root: &Path) -> Vec<Skip> {
    let mut loose = Vec::new();
    walk(root, &mut loose, false);
    loose
        .into_iter()
        .filter(|file| {
            let extension = extension(file);
            extension == "wav" || MEDIA_EXTENSIONS.contains(&extension.as_str())
        })
        .map(|file| Skip {
            file: file.display().to_string(),
            reason: "not in a label folder: ignored (move it into DIR/<label>/)".into(),
        })
        .collect()
}

pub(super) fn read(root: &Path) -> Result<Listing, DatasetError> {
    let locations = recorded_locations(root)?;
    let mut skipped = Vec::new();
    let mut recordings = Vec::new();
    let mut labels = 0;
    for (label, dir) in subdirectories(root) {
        labels += 1;
        let mut files = Vec::new();
        walk(&dir, &mut files, true);
        let by_stem = by_stem(files, &mut skipped);
        let before = recordings.len();
        for (stem, (wav, videos)) in by_stem {
            let mut videos = videos.into_iter();
            let identifier = |audio: &Path| {
                let relative = audio.strip_prefix(root).unwrap_or(audio);
                locations.get(relative).cloned().unwrap_or_else(|| {
                    stem.strip_prefix(root)
                        .unwrap_or(&stem)
                        .display()
                        .to_string()
                })
            };
            let recording = |audio: PathBuf, video: PathBuf| Clip {
                identifier: identifier(&audio),
                audio,
                video,
                label: label.clone(),
                cut: true,
            };
            if let Some(wav) = wav {
                match videos.next() {
                    Some(video) => recordings.push(recording(wav, video)),
                    None => skipped.push(Skip {
                        file: wav.display().to_string(),
                        reason: format!(
                            "no video of the same name beside it ({}): avscene needs picture and sound",
                            MEDIA_EXTENSIONS.join(", ")
                        ),
                    }),
                }
            }
            // Videos not paired with a WAV carry their own sound: recordings of their own.
            recordings.extend(videos.map(|video| recording(video.clone(), video)));
        }
        if recordings.len() == before {
            skipped.push(Skip {
                file: format!("{}/", dir.display()),
                reason: format!("label '{label}' has no media files: label ignored"),
            });
        }
    }
    if labels == 0 {
        return Err(DatasetError::NotFound(root.to_path_buf()));
    }
    skipped.extend(loose_media(root));
    Ok(Listing {
        layout: Layout::FolderPerLabel,
        recordings,
        evaluation: None,
        skipped,
    })
}

/// Label folders: the directories directly under `root`, sorted, hidden ones left out.
pub fn subdirectories(root: &Path) -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    dirs.sort();
    dirs
}

/// Every file in `dir` (and its subfolders when `recursive`; hidden ones and `avscene
/// record`'s unfinished `*.partial` files left out), sorted.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, recursive: bool) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            !name.starts_with('.') && !name.ends_with(".partial")
        })
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                walk(&path, files, true);
            }
        } else {
            files.push(path);
        }
    }
}

/// `recordings.csv`: each recorded file's location, by its path relative to `root`.
fn recorded_locations(root: &Path) -> Result<HashMap<PathBuf, String>, DatasetError> {
    let path = root.join(RECORDINGS);
    if !path.is_file() {
        return Ok(HashMap::new());
    }
    Ok(read_table(&path, "filename_audio")?
        .into_iter()
        .filter_map(|row| {
            let audio = row.get("filename_audio")?;
            let identifier = row.get("identifier").filter(|i| !i.is_empty())?;
            Some((PathBuf::from(audio), identifier.clone()))
        })
        .collect())
}
