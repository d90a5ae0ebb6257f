//! `avscene train`: the paper's recipe on a dataset (TAU or folder-per-label layout), with
//! the model code that serves. OpenL3 stays frozen (its embeddings come from the feature
//! cache); the image branch is fine-tuned end to end unless `freeze_image` (small
//! machines); Adam with weight decay, batches of 16, shuffled each epoch, cross-entropy on
//! the clip logits. `init` starts from another model (fine-tuning), its classifier rebuilt
//! when the labels differ.
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

use super::dataset::{Clip, Dataset, Skip};
use super::features::{FeatureCache, frames_to_images};
use super::metrics::{Scores, score};
use super::optim::Adam;
use crate::model::{Model, ModelSpec, Provenance};

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
    /// Seeds initialisation, shuffling and the location split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// The paper's 0.1; the authors' code used 0.
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Clips per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Multiply the learning rate by --lr-decay every N epochs (0: constant).
    #[arg(long, default_value_t = 0)]
    pub lr_step: usize,
    #[arg(long, default_value_t = 0.1)]
    pub lr_decay: f64,
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
    #[error("{0}")]
    Other(String),
}

impl From<String> for TrainError {
    fn from(s: String) -> Self {
        TrainError::Other(s)
    }
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

/// A clip ready for training: its cache entry and class.
pub(super) struct Prepared {
    pub audio: Tensor,
    /// Frames (10, 224, 224, 3) u8, or image embeddings (10, dim) when the image branch
    /// is frozen.
    pub frames: Tensor,
    pub class: i64,
}

pub fn train(options: &TrainOptions, stop: Arc<AtomicBool>) -> Result<TrainSummary, TrainError> {
    let dataset = Dataset::open(&options.data, options.seed)?;
    dataset.check_trainable()?;
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("{}: cannot create: {e}", options.out.display()))?;
    let last_path = options.out.join("last.safetensors");
    let optimizer_path = options.out.join("optimizer.safetensors");
    let log_path = options.out.join("train-log.jsonl");

    tch::manual_seed(options.seed as i64);
    // Where the weights started, kept in every saved model's provenance.
    let mut init = None;
    let mut model = if options.resume {
        let model = Model::load(&last_path, options.device)
            .map_err(|e| TrainError::Model(format!("--resume: {e}")))?;
        if model.spec.classes != dataset.classes {
            return Err(TrainError::Model(format!(
                "--resume: {} was trained on classes {:?}, the dataset has {:?}",
                last_path.display(),
                model.spec.classes,
                dataset.classes
            )));
        }
        init = model.provenance.details.get("init").cloned();
        model
    } else if let Some(path) = &options.init {
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
        init = Some(json!({
            "model": path.display().to_string(),
            "model_id": base.id,
            "classes": base.spec.classes,
            "classifier": classifier,
            "provenance": base.provenance,
        }));
        model
    } else {
        let profile = options.profile.as_deref().unwrap_or("full");
        let mut spec = ModelSpec::profile(profile)
            .ok_or_else(|| format!("unknown profile '{profile}' (full, small)"))?;
        spec.classes = dataset.classes.clone();
        Model::fresh(spec, options.device)
    };
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

    // Features: decoded and embedded once, then read from the cache.
    let cache_dir = options
        .cache
        .clone()
        .unwrap_or_else(|| options.out.join("feature-cache"));
    let mut cache = FeatureCache::new(&cache_dir, &model)?;
    let mut skipped = dataset.skipped.clone();
    let class_of = |c: &Clip| {
        dataset
            .classes
            .iter()
            .position(|l| *l == c.label)
            .unwrap_or(0) as i64
    };
    let mut prepare = |clips: &[Clip], what: &str| -> Vec<Prepared> {
        let bar = progress(clips.len() as u64, &format!("features ({what})"));
        let mut out = Vec::new();
        for clip in clips {
            bar.inc(1);
            let prepared = cache.get(&model, clip).and_then(|features| {
                let frames = if options.freeze_image {
                    cache.image_embeddings(&model, clip, &features)?
                } else {
                    features.iter().map(|f| f.frames.shallow_clone()).collect()
                };
                Ok(features
                    .into_iter()
                    .zip(frames)
                    .map(|(f, frames)| Prepared {
                        audio: f.audio,
                        frames,
                        class: class_of(clip),
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
    let train_set = prepare(&dataset.train, "training");
    let val_set = prepare(&dataset.validation, "validation");
    tracing::info!(
        "features: {} training and {} validation clips; {} recordings from the cache, {} computed ({})",
        train_set.len(),
        val_set.len(),
        cache.hits,
        cache.computed,
        cache_dir.display()
    );
    let mut notes = dataset.notes.clone();
    notes.extend(clip_notes(&dataset.classes, &train_set, &val_set));
    for note in notes.iter().skip(dataset.notes.len()) {
        tracing::warn!("{note}");
    }
    if train_set.is_empty() || val_set.is_empty() {
        return Err(TrainError::Other(format!(
            "{}: no clip could be decoded in the {} split ({} skipped; first: {})",
            dataset.root.display(),
            if train_set.is_empty() {
                "training"
            } else {
                "validation"
            },
            skipped.len(),
            skipped
                .first()
                .map(|s| format!("{}: {}", s.file, s.reason))
                .unwrap_or_default()
        )));
    }

    let run = RunRecord {
        details: BTreeMap::from([
            (
                "dataset".to_string(),
                json!(dataset.root.display().to_string()),
            ),
            ("layout".to_string(), json!(dataset.layout)),
            ("split".to_string(), json!(dataset.split)),
            ("train_recordings".to_string(), json!(dataset.train.len())),
            ("train_clips".to_string(), json!(train_set.len())),
            (
                "validation_recordings".to_string(),
                json!(dataset.validation.len()),
            ),
            ("validation_clips".to_string(), json!(val_set.len())),
            ("settings".to_string(), json!(options)),
            ("init".to_string(), json!(init)),
        ]),
    };

    // What trains: everything but OpenL3 (and the image branch when frozen).
    let trainable: Vec<(String, Tensor)> = model
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
    let mut trainable = trainable;
    trainable.sort_by(|a, b| a.0.cmp(&b.0));
    let mut adam = Adam::new(trainable, options.lr, options.weight_decay);
    let mut history: Vec<EpochLog> = Vec::new();
    if options.resume {
        adam.load(&optimizer_path)
            .map_err(|e| format!("--resume: {e}"))?;
        history = read_log(&log_path);
        tracing::info!(
            "resuming after epoch {} (step {})",
            history.len(),
            adam.step
        );
    } else {
        let _ = std::fs::remove_file(&log_path);
    }
    let mut best = history
        .iter()
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .cloned();
    let first_epoch = history.len() + 1;
    let mut interrupted = false;

    for epoch in first_epoch..=options.epochs {
        let steps = (epoch - 1).checked_div(options.lr_step).unwrap_or(0);
        let lr = options.lr * options.lr_decay.powi(steps as i32);
        adam.lr = lr;
        let started = Instant::now();
        tch::manual_seed((options.seed + epoch as u64) as i64);
        let order: Vec<i64> = Vec::try_from(Tensor::randperm(
            train_set.len() as i64,
            (Kind::Int64, Device::Cpu),
        ))
        .unwrap_or_default();
        let bar = progress(
            train_set.len() as u64,
            &format!("epoch {epoch}/{}", options.epochs),
        );
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
        for chunk in order.chunks(options.batch.max(1)) {
            if stop.load(Ordering::SeqCst) {
                interrupted = true;
                break;
            }
            let batch: Vec<&Prepared> = chunk.iter().map(|&i| &train_set[i as usize]).collect();
            let (logits, labels) = forward(&model, &batch, options.freeze_image, true);
            let loss = logits.cross_entropy_for_logits(&labels);
            adam.zero_grad();
            loss.backward();
            adam.step();
            let n = batch.len();
            loss_sum += loss.double_value(&[]) * n as f64;
            correct += logits
                .argmax(-1, false)
                .eq_tensor(&labels)
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
        if interrupted {
            tracing::warn!(
                "interrupted in epoch {epoch}: saving {} and stopping",
                last_path.display()
            );
            save(&mut model, &run, &history, &last_path)?;
            adam.save(&optimizer_path)?;
            break;
        }
        let (val, _) = evaluate_prepared(&model, &val_set, &dataset.classes, options.freeze_image);
        let entry = EpochLog {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss: val.log_loss,
            val_accuracy: val.accuracy,
            lr,
            clips_per_s: seen as f64 / started.elapsed().as_secs_f64().max(1e-6),
            seconds: started.elapsed().as_secs_f64(),
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
        append_log(&log_path, &entry)?;
        save(&mut model, &run, &history, &last_path)?;
        adam.save(&optimizer_path)?;
        if best.as_ref().is_none_or(|b| entry.val_loss < b.val_loss) {
            save(
                &mut model,
                &run,
                &history,
                &options.out.join("best.safetensors"),
            )?;
            best = Some(entry);
        }
    }
    Ok(TrainSummary {
        epochs_done: history.len(),
        best,
        skipped,
        notes,
        interrupted,
    })
}

/// Logits and labels of a batch.
fn forward(
    model: &Model,
    batch: &[&Prepared],
    frozen_images: bool,
    train: bool,
) -> (Tensor, Tensor) {
    let device = model.vs.device();
    let audio = Tensor::stack(
        &batch
            .iter()
            .map(|p| p.audio.shallow_clone())
            .collect::<Vec<_>>(),
        0,
    )
    .to_device(device);
    let frames = Tensor::stack(
        &batch
            .iter()
            .map(|p| p.frames.shallow_clone())
            .collect::<Vec<_>>(),
        0,
    );
    let labels =
        Tensor::from_slice(&batch.iter().map(|p| p.class).collect::<Vec<_>>()).to_device(device);
    let logits = if frozen_images {
        model.net.head_t(&audio, &frames.to_device(device), train)
    } else {
        model
            .net
            .forward_t(&audio, &frames_to_images(model, &frames), train)
    };
    (logits, labels)
}

/// Scores of the model (eval mode) on prepared clips, and the probabilities.
pub(super) fn evaluate_prepared(
    model: &Model,
    clips: &[Prepared],
    classes: &[String],
    frozen_images: bool,
) -> (Scores, Vec<Vec<f32>>) {
    let mut probabilities = Vec::new();
    let mut truth = Vec::new();
    tch::no_grad(|| {
        for chunk in clips.chunks(16) {
            let batch: Vec<&Prepared> = chunk.iter().collect();
            let (logits, labels) = forward(model, &batch, frozen_images, false);
            let p = logits.softmax(-1, Kind::Float).to_device(Device::Cpu);
            for i in 0..batch.len() as i64 {
                probabilities.push(Vec::<f32>::try_from(p.get(i)).unwrap_or_default());
            }
            truth.extend(
                Vec::<i64>::try_from(labels.to_device(Device::Cpu))
                    .unwrap_or_default()
                    .iter()
                    .map(|&c| c as usize),
            );
        }
    });
    (score(&probabilities, &truth, classes), probabilities)
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

/// A progress bar on a terminal; hidden otherwise (logs carry the per-epoch lines).
pub fn progress(len: u64, prefix: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix:>18} [{bar:30}] {pos}/{len} {msg} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix.to_string());
    bar
}
