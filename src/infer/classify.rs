//! `avscene classify`'s work: one media file decoded through the capture path and
//! classified by the same engine as the live daemon, a label per 10 s window (a second
//! apart) and for the whole file (the mean of the windows' probabilities).

use std::fmt;
use std::path::Path;

use serde::ser::{Serialize, Serializer};

use super::{Engine, InferenceConfig};
use crate::features::{SAMPLE_RATE, WINDOW_SECONDS};
use crate::model::Model;
use crate::support::{ByLabel, argmax};

/// A file classified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Classification {
    pub file: String,
    /// The label of the mean probabilities.
    pub label: String,
    pub probabilities: Probabilities,
    pub windows: Vec<WindowLabel>,
}

/// One window's verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowLabel {
    pub start_s: f64,
    pub label: String,
    pub probabilities: Probabilities,
}

/// Probabilities by class, in the model's class order (a JSON object label → p).
#[derive(Debug, Clone)]
pub struct Probabilities {
    pub classes: std::sync::Arc<[String]>,
    pub values: Vec<f32>,
}

impl Probabilities {
    /// The most probable class and its probability.
    pub fn top(&self) -> (&str, f32) {
        let i = argmax(&self.values);
        let p = self.values.get(i).copied().unwrap_or(0.0);
        (self.classes.get(i).map_or("", String::as_str), p)
    }
}

impl Serialize for Probabilities {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ByLabel {
            labels: &self.classes,
            values: &self.values,
        }
        .serialize(serializer)
    }
}

/// Why a file could not be classified.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelFileError),
    /// The media file does not decode into a window.
    #[error("{}: {reason}", .file.display())]
    Decode {
        file: std::path::PathBuf,
        reason: String,
    },
}

/// Decode `file` and classify every window with the model in `model`.
pub fn classify_file(
    model: &Path,
    file: &Path,
    device: tch::Device,
) -> Result<Classification, ClassifyError> {
    let model = Model::load(model, device)?;
    let windows =
        crate::capture::decode::decode_file(file).map_err(|reason| ClassifyError::Decode {
            file: file.to_path_buf(),
            reason,
        })?;
    let classes: std::sync::Arc<[String]> = model.spec.classes.clone().into();
    let mut engine = Engine::new(model, &InferenceConfig::default());
    let mut labels = Vec::new();
    for chunk in windows.chunks(8) {
        for (w, r) in chunk.iter().zip(engine.classify(chunk)) {
            let probabilities = Probabilities {
                classes: classes.clone(),
                values: r.probabilities,
            };
            labels.push(WindowLabel {
                start_s: w.start_sample as f64 / SAMPLE_RATE as f64,
                label: probabilities.top().0.to_string(),
                probabilities,
            });
        }
    }
    let mut mean = vec![0.0f32; classes.len()];
    for w in &labels {
        for (m, v) in mean.iter_mut().zip(&w.probabilities.values) {
            *m += v / labels.len() as f32;
        }
    }
    let probabilities = Probabilities {
        classes,
        values: mean,
    };
    Ok(Classification {
        file: file.display().to_string(),
        label: probabilities.top().0.to_string(),
        probabilities,
        windows: labels,
    })
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in &self.windows {
            let (label, p) = w.probabilities.top();
            writeln!(
                f,
                "{:7.1}–{:.1} s  {label} ({p:.2})",
                w.start_s,
                w.start_s + WINDOW_SECONDS
            )?;
        }
        let (label, p) = self.probabilities.top();
        writeln!(
            f,
            "{}: {label} ({p:.2}, mean of {} window(s))",
            self.file,
            self.windows.len()
        )?;
        let values = &self.probabilities.values;
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        for i in order {
            writeln!(f, "  {:20} {:.3}", self.probabilities.classes[i], values[i])?;
        }
        Ok(())
    }
}
