//! `avscene evaluate`: a model on a dataset's evaluation clips (`fold1_evaluate.csv`, or
//! the location split of a folder-per-label set), DCASE scores per class and overall, the
//! confusion matrix, a JSON report and PNG plots; and `avscene classify` for one media
//! file, through the live engine.

use std::path::{Path, PathBuf};

use serde_json::json;

use tch::{Device, Kind, Tensor};

use super::batches::{Prepared, evaluate_prepared};
use super::dataset::{Dataset, Skip};
use super::features::FeatureCache;
use super::metrics::{Scores, score};
use super::plot;
use super::trainer::{TrainError, read_log};
use crate::support::progress;
use crate::model::Model;

/// `avscene evaluate` settings (its command-line options).
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateOptions {
    /// The model file to score.
    #[arg(long, short, value_name = "FILE")]
    pub model: PathBuf,
    /// The dataset: TAU (its fold1_evaluate.csv is scored) or folder-per-label (the
    /// location split training held out for validation).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Where evaluation.json and the plots go (default: beside the model).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Feature cache directory (default OUT/feature-cache).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// The seed training used: it picks the held-out locations of a folder-per-label set.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also score the DCASE 1-s protocol: each second from that second alone.
    #[arg(long)]
    pub one_second: bool,
    /// Set from `--device` once resolved.
    #[arg(skip = tch::Device::Cpu)]
    pub device: tch::Device,
}

pub struct Evaluation {
    pub scores: Scores,
    pub one_second: Option<Scores>,
    pub skipped: Vec<Skip>,
    pub report: PathBuf,
    pub plots: Vec<PathBuf>,
}

pub fn evaluate(options: &EvaluateOptions) -> Result<Evaluation, TrainError> {
    let model = Model::load(&options.model, options.device).map_err(|e| e.to_string())?;
    let dataset = Dataset::open(&options.data, options.seed)?;
    let out = options.out.clone().unwrap_or_else(|| {
        options
            .model
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: cannot create: {e}", out.display()))?;
    let cache_dir = options
        .cache
        .clone()
        .unwrap_or_else(|| out.join("feature-cache"));
    let mut cache = FeatureCache::new(&cache_dir, &model)?;
    let mut skipped = dataset.skipped.clone();
    let mut clips = Vec::new();
    let bar = progress(dataset.evaluation.len() as u64, "evaluating");
    for clip in &dataset.evaluation {
        bar.inc(1);
        let Some(class) = model.spec.classes.iter().position(|c| *c == clip.label) else {
            skipped.push(Skip {
                file: clip.name(),
                reason: format!("label '{}' is not one of the model's classes", clip.label),
            });
            continue;
        };
        match cache.get(&model, clip) {
            Ok(features) => clips.extend((0..features.clips()).map(|index| Prepared {
                features: features.clone(),
                images: None,
                index,
                class: class as i64,
            })),
            Err(reason) => skipped.push(Skip {
                file: clip.name(),
                reason,
            }),
        }
    }
    bar.finish_and_clear();
    if clips.is_empty() {
        return Err(TrainError::Other(format!(
            "{}: no clip to evaluate ({} skipped)",
            dataset.root.display(),
            skipped.len()
        )));
    }
    let (scores, _) = evaluate_prepared(&model, &clips, &model.spec.classes)?;
    let one_second = if options.one_second {
        Some(one_second_scores(&model, &clips, &model.spec.classes)?)
    } else {
        None
    };
    let report = out.join("evaluation.json");
    let body = json!({
        "model": options.model.display().to_string(),
        "model_id": model.id,
        "dataset": dataset.root.display().to_string(),
        "protocol": "clip (10 s)",
        "scores": scores,
        "scores_1s": one_second,
        "skipped": skipped.iter().map(|s| json!({"file": s.file, "reason": s.reason})).collect::<Vec<_>>(),
    });
    std::fs::write(&report, format!("{body:#}\n"))
        .map_err(|e| format!("{}: {e}", report.display()))?;
    let mut plots = vec![out.join("confusion.png")];
    plot::confusion(&scores, &plots[0])?;
    let log = options.model.with_file_name("train-log.jsonl");
    let history = read_log(&log);
    if !history.is_empty() {
        let curves = out.join("learning-curves.png");
        plot::learning_curves(&history, &curves)?;
        plots.push(curves);
    }
    Ok(Evaluation {
        scores,
        one_second,
        skipped,
        report,
        plots,
    })
}

/// The DCASE 1-s protocol: every second of a clip classified from that second alone —
/// its OpenL3 frames (those centred in the second) and its picture, repeated to fill
/// the model's 10 s input. One score row per second.
fn one_second_scores(
    model: &Model,
    clips: &[Prepared],
    classes: &[String],
) -> Result<Scores, String> {
    let device = model.vs.device();
    let (mut probabilities, mut truth) = (Vec::new(), Vec::new());
    tch::no_grad(|| {
        for clip in clips {
            let images = crate::features::image::images(&clip.frames()?, device);
            let pictures = model.net.embed_images(&images, false);
            let clip_audio = clip.audio()?.to_device(device);
            let (frames, seconds) = (clip_audio.size()[0], pictures.size()[0]);
            let per_second = (frames + seconds - 1) / seconds;
            let mut audio = Vec::new();
            let mut picture = Vec::new();
            for k in 0..seconds {
                let from = (k * per_second).min(frames - 1);
                let own = clip_audio.narrow(0, from, per_second.min(frames - from));
                let repeats = (frames + own.size()[0] - 1) / own.size()[0];
                audio.push(own.repeat([repeats, 1]).narrow(0, 0, frames));
                picture.push(pictures.get(k).unsqueeze(0).repeat([seconds, 1]));
            }
            let audio = Tensor::stack(&audio, 0);
            let logits = model.net.head_t(&audio, &Tensor::stack(&picture, 0), false);
            let p = logits.softmax(-1, Kind::Float).to_device(Device::Cpu);
            for k in 0..seconds {
                probabilities.push(Vec::<f32>::try_from(p.get(k)).unwrap_or_default());
                truth.push(clip.class as usize);
            }
        }
        Ok::<(), String>(())
    })?;
    Ok(score(&probabilities, &truth, classes))
}

/// `avscene classify`: every 10 s window of one media file, and the file as a whole
/// (the mean of the windows' probabilities).
pub struct Classification {
    pub classes: Vec<String>,
    /// Per window: (start in seconds, probabilities).
    pub windows: Vec<(f64, Vec<f32>)>,
    pub mean: Vec<f32>,
}

pub fn classify_file(
    model: &Path,
    file: &Path,
    device: tch::Device,
) -> Result<Classification, String> {
    let model = Model::load(model, device).map_err(|e| e.to_string())?;
    let windows =
        super::features::decode_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let classes = model.spec.classes.clone();
    let mut engine = crate::infer::Engine::new(model, &crate::infer::InferenceConfig::default());
    let mut out = Vec::new();
    for chunk in windows.chunks(8) {
        for (w, r) in chunk.iter().zip(engine.classify(chunk)) {
            out.push((
                w.start_sample as f64 / crate::features::SAMPLE_RATE as f64,
                r.probabilities,
            ));
        }
    }
    let mut mean = vec![0.0f32; classes.len()];
    for (_, p) in &out {
        for (m, v) in mean.iter_mut().zip(p) {
            *m += v / out.len() as f32;
        }
    }
    Ok(Classification {
        classes,
        windows: out,
        mean,
    })
}
