//! The TAU Urban Audio-Visual Scenes 2021 layout: `meta.csv` names every clip's label and
//! location; `evaluation_setup/fold1_train.csv` and `fold1_evaluate.csv`, when there, say
//! which clips train and which validate. All tab-separated with a header row.

use std::collections::HashMap;
use std::path::Path;

use super::{Clip, DatasetError, Layout, Listing, Skip, read_table};

pub(super) fn read(root: &Path) -> Result<Listing, DatasetError> {
    let mut skipped = Vec::new();
    // meta.csv: every clip's label and location, by audio file name.
    let mut meta: HashMap<String, Clip> = HashMap::new();
    for row in read_table(&root.join("meta.csv"), "filename_audio")? {
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
            cut: false,
        };
        meta.insert(audio, clip);
    }
    let setup = root.join("evaluation_setup");
    let mut listed = |name: &str| -> Result<Option<Vec<Clip>>, DatasetError> {
        let path = setup.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        let mut clips = Vec::new();
        for row in read_table(&path, "filename_audio")? {
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
    let train = listed("fold1_train.csv")?;
    let evaluation = listed("fold1_evaluate.csv")?;
    let recordings = train.unwrap_or_else(|| {
        let mut clips: Vec<Clip> = meta.values().cloned().collect();
        clips.sort_by(|a, b| a.audio.cmp(&b.audio));
        clips
    });
    Ok(Listing {
        layout: Layout::Tau,
        recordings,
        evaluation,
        skipped,
    })
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
