//! What a training run leaves on disk: `last.safetensors` and `optimizer.safetensors`
//! every epoch (so `--resume` continues exactly), `best.safetensors` at the lowest
//! validation log-loss, and a line per epoch in `train-log.jsonl`. Every model file
//! records the run that made it (dataset, split, settings, lineage, last epoch).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::optim::Adam;
use super::trainer::TrainError;
use crate::model::{Model, Provenance};

/// One line of `train-log.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub lr: f64,
    pub clips_per_s: f64,
    pub seconds: f64,
}

/// The files of a training run and what each saved model records about it.
pub(super) struct Checkpoints {
    pub last: PathBuf,
    pub best: PathBuf,
    pub optimizer: PathBuf,
    pub log: PathBuf,
    /// Provenance details of every model saved.
    details: BTreeMap<String, serde_json::Value>,
}

impl Checkpoints {
    pub fn new(out: &Path, details: BTreeMap<String, serde_json::Value>) -> Checkpoints {
        Checkpoints {
            last: out.join("last.safetensors"),
            best: out.join("best.safetensors"),
            optimizer: out.join("optimizer.safetensors"),
            log: out.join("train-log.jsonl"),
            details,
        }
    }

    /// The run so far: `last` and the optimiser (and `best` when `best`).
    pub fn save(
        &self,
        model: &mut Model,
        adam: &Adam,
        history: &[EpochLog],
        best: bool,
    ) -> Result<(), TrainError> {
        self.save_model(model, history, &self.last)?;
        adam.save(&self.optimizer).map_err(TrainError::Failed)?;
        if best {
            self.save_model(model, history, &self.best)?;
        }
        Ok(())
    }

    /// An epoch's line in the log.
    pub fn log(&self, entry: &EpochLog) -> Result<(), TrainError> {
        use std::io::Write;
        let failed = |e: std::io::Error| TrainError::Failed(format!("{}: {e}", self.log.display()));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(failed)?;
        writeln!(file, "{}", json!(entry)).map_err(failed)
    }

    fn save_model(
        &self,
        model: &mut Model,
        history: &[EpochLog],
        path: &Path,
    ) -> Result<(), TrainError> {
        let mut provenance = Provenance::new("train");
        provenance.details = self.details.clone();
        provenance
            .details
            .insert("epochs".to_string(), json!(history.len()));
        provenance
            .details
            .insert("last_epoch".to_string(), json!(history.last()));
        model.provenance = provenance;
        let temporary = path.with_extension("partial");
        model
            .save(&temporary)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                std::fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))
            })
            .map_err(TrainError::Failed)
    }
}

/// The epochs logged so far (a training log beside a model file).
pub fn read_log(path: &Path) -> Vec<EpochLog> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
