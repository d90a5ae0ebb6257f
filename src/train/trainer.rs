//! `avscene train`: the authors' recipe on a dataset (TAU or folder-per-label layout), with
//! the model code that serves. OpenL3 stays frozen (its embeddings come from the feature
//! cache); the image branch is fine-tuned end to end unless `--freeze-encoders` (small
//! machines). The defaults are what the authors' code runs: Adam, lr 1e-4, no weight
//! decay, batches of 16, 50 epochs, the learning rate × 0.1 at epochs 20 and 40, a random
//! horizontal flip of the frames, cross-entropy on the clip logits, shuffled each epoch.
//! The best epoch is picked on a validation split held out of the training recordings
//! (never on the list scores are reported on). Features are read from the cache a batch
//! at a time, so memory does not grow with the dataset.
//! Every epoch writes `last.safetensors` (+ `optimizer.safetensors`) and a line in
//! `train-log.jsonl`; the epoch with the lowest validation log-loss is `best.safetensors`.
//! `--resume` continues from `last`; Ctrl-C saves it and exits cleanly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::batches::{Augment, Batch, Flip, Prepared, evaluate_prepared, training_loss};
use super::dataset::{Clip, Dataset, Skip};
use super::features::FeatureCache;
use super::optim::Adam;
use crate::model::{Model, ModelSpec, Provenance};
use crate::support::progress;

/// `avscene train` settings (its command-line options).
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct TrainOptions {
    /// Dataset: TAU Urban Audio-Visual Scenes 2021 layout, or one folder per label
    /// (DIR/<label>/ media files, as `avscene record` writes).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Where checkpoints, the best model and the training log go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Train up to this epoch (with --resume: the total, not more).
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    /// Architecture of the new model: full (the paper's) or small [default: full].
    #[arg(long, conflicts_with = "init")]
    pub profile: Option<String>,
    /// Fine-tune: start from this model file (architecture and weights). When its labels
    /// differ from the dataset's, the classifier is rebuilt for the new ones (labels it
    /// knows keep their weights); the rest is kept.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Continue from OUT/last.safetensors and OUT/optimizer.safetensors.
    #[arg(long)]
    pub resume: bool,
    /// Seeds initialisation, shuffling, augmentation and the validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Decoupled weight decay (AdamW: weights shrink by lr × this each step). The
    /// authors' Adam has none.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clips per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Multiply the learning rate by --lr-decay at every N-th epoch (20: at epochs 20 and
    /// 40, as the authors' configs; 0: constant).
    #[arg(long, default_value_t = 20)]
    pub lr_step: usize,
    #[arg(long, default_value_t = 0.1)]
    pub lr_decay: f64,
    /// Random horizontal flip of the training frames: per clip, per frame (the
    /// authors' dataloader), or off. Frozen image embeddings are never flipped.
    #[arg(long, value_enum, default_value_t = Flip::Clip)]
    pub flip: Flip,
    /// Mixup across clips with Beta(α, α), applied to the OpenL3 embeddings and the
    /// frames alike (0: off, the authors' recipe; 0.2–0.4 is usual).
    #[arg(long, value_name = "ALPHA", default_value_t = 0.0)]
    pub mixup: f64,
    /// Freeze the encoders: the image branch keeps its weights (OpenL3 always does) and
    /// only the audio branch, fusion and classifier train, on embeddings computed once —
    /// minutes on a small CPU. Best with --init.
    #[arg(long = "freeze-encoders", visible_alias = "freeze-image")]
    pub freeze_image: bool,
    /// Feature cache directory (default OUT/feature-cache).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Set from `--device` once resolved.
    #[serde(skip)]
    #[arg(skip = Device::Cpu)]
    pub device: Device,
}

impl TrainOptions {
    /// Every number in range before anything starts.
    fn check(&self) -> Result<(), TrainError> {
        let bad = |what: &str, why: String| Err(TrainError::Options(format!("{what}: {why}")));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "--lr",
                format!("must be a positive number, not {}", self.lr),
            );
        }
        if !(self.weight_decay.is_finite() && (0.0..1.0).contains(&self.weight_decay)) {
            return bad(
                "--weight-decay",
                format!("must be in [0, 1), not {}", self.weight_decay),
            );
        }
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return bad(
                "--lr-decay",
                format!("must be in (0, 1], not {}", self.lr_decay),
            );
        }
        if !(self.mixup.is_finite() && self.mixup >= 0.0) {
            return bad(
                "--mixup",
                format!("must be 0 (off) or a positive α, not {}", self.mixup),
            );
        }
        if self.batch == 0 {
            return bad("--batch", "must be at least 1".into());
        }
        Ok(())
    }

    /// The learning rate of a (1-based) epoch: the authors decay it at the start of every
    /// `lr_step`-th epoch.
    fn lr_at(&self, epoch: usize) -> f64 {
        let steps = epoch.checked_div(self.lr_step).unwrap_or(0);
        self.lr * self.lr_decay.powi(steps as i32)
    }
}

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

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Dataset(#[from] super::dataset::DatasetError),
    /// A model file named on the command line (`--init`, `--resume`) cannot be used.
    #[error("{0}")]
    Model(String),
    /// An option out of range.
    #[error("{0}")]
    Options(String),
    /// Training failed while running: decoding, the feature cache, writing checkpoints.
    #[error("{0}")]
    Failed(String),
}

/// What a run did.
#[derive(Debug)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub best: Option<EpochLog>,
    pub skipped: Vec<Skip>,
    /// Warnings about the data (labels not validated, too few clips, the split).
    pub notes: Vec<String>,
    pub interrupted: bool,
}

pub fn train(options: &TrainOptions, stop: Arc<AtomicBool>) -> Result<TrainSummary, TrainError> {
    options.check()?;
    let dataset = Dataset::open(&options.data, options.seed)?;
    dataset.check_trainable()?;
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("{}: cannot create: {e}", options.out.display()))
        .map_err(TrainError::Failed)?;
    tch::manual_seed(options.seed as i64);
    let (mut model, init) = starting_model(options, &dataset)?;
    tracing::info!(
        "dataset {} ({}): {} classes, {} training recordings, {} validation recordings ({}), {} skipped",
        dataset.root.display(),
        dataset.layout,
        dataset.classes.len(),
        dataset.train.len(),
        dataset.validation.len(),
        dataset.split,
        dataset.skipped.len()
    );
    for note in &dataset.notes {
        tracing::warn!("{note}");
    }
    let sets = prepare_sets(options, &dataset, &model)?;
    crate::support::process::release_free_memory();
    let run = RunRecord {
        details: BTreeMap::from([
            ("dataset".into(), json!(dataset.root.display().to_string())),
            ("layout".into(), json!(dataset.layout)),
            ("split".into(), json!(dataset.split)),
            ("train_recordings".into(), json!(dataset.train.len())),
            ("train_clips".into(), json!(sets.train.len())),
            (
                "validation_recordings".into(),
                json!(dataset.validation.len()),
            ),
            ("validation_clips".into(), json!(sets.validation.len())),
            ("settings".into(), json!(options)),
            ("init".into(), json!(init)),
        ]),
    };
    let paths = RunPaths::new(&options.out);
    let mut adam = optimizer(&model, options);
    let mut history: Vec<EpochLog> = Vec::new();
    if options.resume {
        adam.load(&paths.optimizer)
            .map_err(|e| TrainError::Model(format!("--resume: {e}")))?;
        history = read_log(&paths.log);
        tracing::info!(
            "resuming after epoch {} (step {})",
            history.len(),
            adam.step
        );
    } else {
        let _ = std::fs::remove_file(&paths.log);
    }
    if options.freeze_image && options.flip != Flip::Off {
        tracing::info!("--freeze-encoders: the image embeddings are computed once, unflipped");
    }
    let mut best = history
        .iter()
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .cloned();
    let mut interrupted = false;
    for epoch in history.len() + 1..=options.epochs {
        let Some(trained) = train_epoch(&model, &mut adam, &sets.train, options, epoch, &stop)?
        else {
            interrupted = true;
            tracing::warn!(
                "interrupted in epoch {epoch}: saving {} and stopping",
                paths.last.display()
            );
            save(&mut model, &run, &history, &paths.last).map_err(TrainError::Failed)?;
            adam.save(&paths.optimizer).map_err(TrainError::Failed)?;
            break;
        };
        let (val, _) = evaluate_prepared(&model, &sets.validation, &dataset.classes)
            .map_err(TrainError::Failed)?;
        let entry = EpochLog {
            epoch,
            val_loss: val.log_loss,
            val_accuracy: val.accuracy,
            ..trained
        };
        tracing::info!(
            "epoch {epoch}/{}: train loss {:.4} acc {:.1}% | val loss {:.4} acc {:.1}% | {:.1} clips/s, {:.0} s",
            options.epochs,
            entry.train_loss,
            entry.train_accuracy * 100.0,
            entry.val_loss,
            entry.val_accuracy * 100.0,
            entry.clips_per_s,
            entry.seconds
        );
        history.push(entry.clone());
        append_log(&paths.log, &entry).map_err(TrainError::Failed)?;
        save(&mut model, &run, &history, &paths.last).map_err(TrainError::Failed)?;
        adam.save(&paths.optimizer).map_err(TrainError::Failed)?;
        if best.as_ref().is_none_or(|b| entry.val_loss < b.val_loss) {
            save(&mut model, &run, &history, &paths.best).map_err(TrainError::Failed)?;
            best = Some(entry);
        }
    }
    let mut skipped = sets.skipped;
    skipped.splice(0..0, dataset.skipped.iter().cloned());
    let mut notes = dataset.notes.clone();
    notes.extend(sets.notes);
    Ok(TrainSummary {
        epochs_done: history.len(),
        best,
        skipped,
        notes,
        interrupted,
    })
}

/// The files of a training run.
struct RunPaths {
    last: PathBuf,
    best: PathBuf,
    optimizer: PathBuf,
    log: PathBuf,
}

impl RunPaths {
    fn new(out: &Path) -> RunPaths {
        RunPaths {
            last: out.join("last.safetensors"),
            best: out.join("best.safetensors"),
            optimizer: out.join("optimizer.safetensors"),
            log: out.join("train-log.jsonl"),
        }
    }
}

/// The model training starts from — `--resume`'s last checkpoint, `--init`'s base
/// relabelled for the dataset, or a fresh one of the profile — and where its weights came
/// from (kept in every saved model's provenance).
fn starting_model(
    options: &TrainOptions,
    dataset: &Dataset,
) -> Result<(Model, Option<serde_json::Value>), TrainError> {
    if options.resume {
        let last = RunPaths::new(&options.out).last;
        let model = Model::load(&last, options.device)
            .map_err(|e| TrainError::Model(format!("--resume: {e}")))?;
        if model.spec.classes != dataset.classes {
            return Err(TrainError::Model(format!(
                "--resume: {} was trained on classes {:?}, the dataset has {:?}",
                last.display(),
                model.spec.classes,
                dataset.classes
            )));
        }
        let init = model.provenance.details.get("init").cloned();
        return Ok((model, init));
    }
    if let Some(path) = &options.init {
        let base = Model::load(path, options.device)
            .map_err(|e| TrainError::Model(format!("--init: {e}")))?;
        let (model, kept) = base.relabel(&dataset.classes);
        let classifier = if kept == dataset.classes.len() && kept == base.spec.classes.len() {
            "kept".to_string()
        } else {
            format!(
                "rebuilt: {kept} of {} labels kept their weights",
                dataset.classes.len()
            )
        };
        tracing::info!(
            "fine-tuning {} ({}, labels {:?}); classifier {classifier}",
            path.display(),
            base.id,
            base.spec.classes
        );
        let init = json!({
            "model": path.display().to_string(),
            "model_id": base.id,
            "classes": base.spec.classes,
            "classifier": classifier,
            "provenance": base.provenance,
        });
        return Ok((model, Some(init)));
    }
    let profile = options.profile.as_deref().unwrap_or("full");
    let mut spec = ModelSpec::profile(profile).ok_or_else(|| {
        TrainError::Options(format!(
            "--profile: unknown profile '{profile}' (full, small)"
        ))
    })?;
    spec.classes = dataset.classes.clone();
    Ok((Model::fresh(spec, options.device), None))
}

/// The training and validation clips, prepared in the feature cache.
struct Sets {
    train: Vec<Prepared>,
    validation: Vec<Prepared>,
    skipped: Vec<Skip>,
    notes: Vec<String>,
}

/// Decode and embed every recording once (later runs read the cache), keeping only where
/// each clip's features lie.
fn prepare_sets(
    options: &TrainOptions,
    dataset: &Dataset,
    model: &Model,
) -> Result<Sets, TrainError> {
    let cache_dir = options
        .cache
        .clone()
        .unwrap_or_else(|| options.out.join("feature-cache"));
    let mut cache = FeatureCache::new(&cache_dir, model).map_err(TrainError::Failed)?;
    let mut skipped = Vec::new();
    let mut prepare = |clips: &[Clip], what: &str| -> Vec<Prepared> {
        let bar = progress(clips.len() as u64, &format!("features ({what})"));
        let mut out = Vec::new();
        for clip in clips {
            bar.inc(1);
            let class = dataset
                .classes
                .iter()
                .position(|l| *l == clip.label)
                .unwrap_or(0) as i64;
            let prepared = cache.get(model, clip).and_then(|features| {
                let images = if options.freeze_image {
                    Some(cache.image_embeddings(model, clip, &features)?)
                } else {
                    None
                };
                Ok((0..features.clips()).map(move |index| Prepared {
                    features: features.clone(),
                    images: images.clone(),
                    index,
                    class,
                }))
            });
            match prepared {
                Ok(clips) => out.extend(clips),
                Err(reason) => {
                    tracing::warn!("skipping {}: {reason}", clip.name());
                    skipped.push(Skip {
                        file: clip.name(),
                        reason,
                    });
                }
            }
        }
        bar.finish_and_clear();
        out
    };
    let train = prepare(&dataset.train, "training");
    let validation = prepare(&dataset.validation, "validation");
    tracing::info!(
        "features: {} training and {} validation clips; {} recordings from the cache, {} computed ({})",
        train.len(),
        validation.len(),
        cache.hits,
        cache.computed,
        cache_dir.display()
    );
    let notes = clip_notes(&dataset.classes, &train, &validation);
    for note in &notes {
        tracing::warn!("{note}");
    }
    if train.is_empty() || validation.is_empty() {
        return Err(TrainError::Failed(format!(
            "{}: no clip could be decoded in the {} split ({} skipped; first: {})",
            dataset.root.display(),
            if train.is_empty() {
                "training"
            } else {
                "validation"
            },
            skipped.len() + dataset.skipped.len(),
            skipped
                .first()
                .map(|s| format!("{}: {}", s.file, s.reason))
                .unwrap_or_default()
        )));
    }
    Ok(Sets {
        train,
        validation,
        skipped,
        notes,
    })
}

/// Adam over what trains: everything but OpenL3 (and the image branch when frozen).
fn optimizer(model: &Model, options: &TrainOptions) -> Adam {
    let mut trainable: Vec<(String, Tensor)> = model
        .vs
        .variables()
        .into_iter()
        .filter(|(name, var)| {
            let frozen = name.starts_with("openl3.")
                || (options.freeze_image && name.starts_with("video."))
                || !var.requires_grad();
            if frozen {
                let mut v = var.shallow_clone();
                let _ = v.requires_grad_(false);
            }
            !frozen
        })
        .collect();
    trainable.sort_by(|a, b| a.0.cmp(&b.0));
    Adam::new(trainable, options.lr, options.weight_decay)
}

/// One pass over the training clips in a seeded random order; `None` when interrupted.
/// The validation fields of the log are left for the caller.
fn train_epoch(
    model: &Model,
    adam: &mut Adam,
    clips: &[Prepared],
    options: &TrainOptions,
    epoch: usize,
    stop: &AtomicBool,
) -> Result<Option<EpochLog>, TrainError> {
    let lr = options.lr_at(epoch);
    adam.lr = lr;
    let augment = Augment {
        flip: options.flip,
        mixup: options.mixup,
    };
    let started = Instant::now();
    tch::manual_seed((options.seed + epoch as u64) as i64);
    let order: Vec<i64> = Vec::try_from(Tensor::randperm(
        clips.len() as i64,
        (Kind::Int64, Device::Cpu),
    ))
    .unwrap_or_default();
    let bar = progress(
        clips.len() as u64,
        &format!("epoch {epoch}/{}", options.epochs),
    );
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
    for chunk in order.chunks(options.batch) {
        if stop.load(Ordering::SeqCst) {
            bar.finish_and_clear();
            return Ok(None);
        }
        let members: Vec<&Prepared> = chunk.iter().map(|&i| &clips[i as usize]).collect();
        let batch = Batch::read(model, &members).map_err(TrainError::Failed)?;
        let (logits, loss) = training_loss(model, &batch, augment);
        adam.zero_grad();
        loss.backward();
        adam.step();
        let n = batch.len();
        loss_sum += loss.double_value(&[]) * n as f64;
        correct += logits
            .argmax(-1, false)
            .eq_tensor(&batch.labels)
            .sum(Kind::Int64)
            .int64_value(&[]);
        seen += n;
        bar.inc(n as u64);
        let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-6);
        bar.set_message(format!(
            "loss {:.3} acc {:.1}% {rate:.1} clips/s",
            loss_sum / seen as f64,
            100.0 * correct as f64 / seen as f64
        ));
    }
    bar.finish_and_clear();
    Ok(Some(EpochLog {
        epoch,
        train_loss: loss_sum / seen.max(1) as f64,
        train_accuracy: correct as f64 / seen.max(1) as f64,
        val_loss: f64::NAN,
        val_accuracy: f64::NAN,
        lr,
        clips_per_s: seen as f64 / started.elapsed().as_secs_f64().max(1e-6),
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// Training warnings about clip counts: a label with fewer than `FEW_CLIPS` training clips, or
/// none to validate on after decoding.
fn clip_notes(classes: &[String], train: &[Prepared], validation: &[Prepared]) -> Vec<String> {
    let mut notes = Vec::new();
    for (i, label) in classes.iter().enumerate() {
        let count = |set: &[Prepared]| set.iter().filter(|p| p.class == i as i64).count();
        let (t, v) = (count(train), count(validation));
        if t < super::dataset::FEW_CLIPS {
            notes.push(format!(
                "label '{label}': only {t} training clip(s) of 10 s: record a few minutes of it"
            ));
        }
        if v == 0 && t > 0 {
            notes.push(format!(
                "label '{label}': no validation clip could be decoded"
            ));
        }
    }
    notes
}

/// What every saved model records about the run that made it.
struct RunRecord {
    details: BTreeMap<String, serde_json::Value>,
}

fn save(
    model: &mut Model,
    run: &RunRecord,
    history: &[EpochLog],
    path: &Path,
) -> Result<(), String> {
    let mut provenance = Provenance::new("train");
    provenance.details = run.details.clone();
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
}

fn append_log(path: &Path, entry: &EpochLog) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "{}", json!(entry)).map_err(|e| format!("{}: {e}", path.display()))
}

/// The epochs logged so far (a training log beside a model file).
pub fn read_log(path: &Path) -> Vec<EpochLog> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
