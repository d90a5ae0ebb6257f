//! `avscene train`: the authors' recipe on a dataset (TAU or folder-per-label layout), with
//! the model code that serves. OpenL3 stays frozen (its embeddings come from the feature
//! cache); the image branch is fine-tuned end to end unless `--freeze-encoders` (small
//! machines). The defaults are what the authors' code runs: Adam, lr 1e-4, no weight
//! decay, batches of 16, 50 epochs, the learning rate × 0.1 at epochs 20 and 40, a random
//! horizontal flip of the frames, cross-entropy on the clip logits, shuffled each epoch.
//! The best epoch is picked on a validation split held out of the training recordings
//! (never on the list scores are reported on). Features are read from the cache a batch
//! at a time, so memory does not grow with the dataset.
//! Checkpoints (`checkpoint.rs`) every epoch; `--resume` continues from `last`; Ctrl-C
//! saves it and exits cleanly. The options are in `options.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::TrainOptions;
use super::batches::{Augment, Batch, Flip, Prepared, evaluate_prepared, training_loss};
use super::checkpoint::{Checkpoints, EpochLog, read_log};
use super::dataset::{Clip, Dataset, Skip};
use super::features::FeatureCache;
use super::optim::Adam;
use crate::model::{Model, ModelSpec};
use crate::support::progress;

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
    std::fs::create_dir_all(&options.out).map_err(|e| {
        TrainError::Failed(format!("{}: cannot create: {e}", options.out.display()))
    })?;
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
    let checkpoints = Checkpoints::new(&options.out, run_details(options, &dataset, &sets, init));
    let mut adam = optimizer(&model, options);
    let mut history: Vec<EpochLog> = Vec::new();
    if options.resume {
        adam.load(&checkpoints.optimizer)
            .map_err(|e| TrainError::Model(format!("--resume: {e}")))?;
        history = read_log(&checkpoints.log);
        tracing::info!(
            "resuming after epoch {} (step {})",
            history.len(),
            adam.step
        );
    } else {
        let _ = std::fs::remove_file(&checkpoints.log);
    }
    if options.freeze_image && options.flip != Flip::Off {
        tracing::info!("--freeze-encoders: the image embeddings are computed once, unflipped");
    }
    let interrupted = epochs(
        &mut model,
        &mut adam,
        &sets,
        options,
        &checkpoints,
        &mut history,
        &stop,
    )?;
    let best = history
        .iter()
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .cloned();
    let mut skipped = dataset.skipped.clone();
    skipped.extend(sets.skipped);
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

/// What every saved model records about the run: the dataset, its split, the settings,
/// where the weights started.
fn run_details(
    options: &TrainOptions,
    dataset: &Dataset,
    sets: &Sets,
    init: Option<serde_json::Value>,
) -> BTreeMap<String, serde_json::Value> {
    BTreeMap::from([
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
    ])
}

/// Train from the epoch after `history` up to `options.epochs`, validating and saving
/// after each; returns whether it was interrupted (then `last` holds the run so far).
fn epochs(
    model: &mut Model,
    adam: &mut Adam,
    sets: &Sets,
    options: &TrainOptions,
    checkpoints: &Checkpoints,
    history: &mut Vec<EpochLog>,
    stop: &AtomicBool,
) -> Result<bool, TrainError> {
    let mut best = history.iter().map(|e| e.val_loss).min_by(f64::total_cmp);
    for epoch in history.len() + 1..=options.epochs {
        let Some(trained) = train_epoch(model, adam, &sets.train, options, epoch, stop)? else {
            tracing::warn!(
                "interrupted in epoch {epoch}: saving {} and stopping",
                checkpoints.last.display()
            );
            checkpoints.save(model, adam, history, false)?;
            return Ok(true);
        };
        let (val, _) = evaluate_prepared(model, &sets.validation, &model.spec.classes)
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
        checkpoints.log(&entry)?;
        let improved = best.is_none_or(|b| entry.val_loss < b);
        if improved {
            best = Some(entry.val_loss);
        }
        checkpoints.save(model, adam, history, improved)?;
    }
    Ok(false)
}

/// The model training starts from — `--resume`'s last checkpoint, `--init`'s base
/// relabelled for the dataset, or a fresh one of the profile — and where its weights came
/// from (kept in every saved model's provenance).
fn starting_model(
    options: &TrainOptions,
    dataset: &Dataset,
) -> Result<(Model, Option<serde_json::Value>), TrainError> {
    if options.resume {
        let last = options.out.join("last.safetensors");
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
        let label = format!("features ({what})");
        let bar = progress(clips.len() as u64, &label);
        let mut said = std::time::Instant::now();
        let mut out = Vec::new();
        for clip in clips {
            bar.inc(1);
            crate::support::log_progress(&bar, &label, &mut said);
            let class = dataset
                .classes
                .iter()
                .position(|l| *l == clip.label)
                .unwrap_or(0) as i64;
            let prepared =
                Prepared::recording(&mut cache, model, clip, class, options.freeze_image);
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
