//! `avscene evaluate`: a model on a dataset's evaluation clips (`fold1_evaluate.csv`, or
//! the location split of a folder-per-label set), DCASE scores per class and overall, the
//! confusion matrix, a JSON report and PNG plots.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::batches::{Prepared, evaluate_prepared};
use super::checkpoint::read_log;
use super::dataset::{Dataset, Skip};
use super::features::FeatureCache;
use super::metrics::{Scores, score};
use super::plot;
use super::trainer::TrainError;
use crate::model::Model;
use crate::support::progress;

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

/// What `evaluate` did: its report (also written as `evaluation.json`) and the plots.
pub struct Evaluation {
    pub report: EvaluationReport,
    /// Where the report was written.
    pub path: PathBuf,
    pub plots: Vec<PathBuf>,
}

/// `evaluation.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvaluationReport {
    pub model: String,
    pub model_id: String,
    pub dataset: String,
    pub protocol: &'static str,
    pub scores: Scores,
    /// The DCASE 1-s protocol, when asked for.
    pub scores_1s: Option<Scores>,
    pub skipped: Vec<Skip>,
}

impl std::fmt::Display for EvaluationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "clip protocol (10 s):\n{}", self.scores.table())?;
        if let Some(scores) = &self.scores_1s {
            write!(f, "1-s protocol:\n{}", scores.table())?;
        }
        for s in &self.skipped {
            writeln!(f, "skipped {}: {}", s.file, s.reason)?;
        }
        Ok(())
    }
}

pub fn evaluate(options: &EvaluateOptions) -> Result<Evaluation, TrainError> {
    let model = Model::load(&options.model, options.device)
        .map_err(|e| TrainError::Model(format!("--model: {e}")))?;
    let dataset = Dataset::open(&options.data, options.seed)?;
    let out = options.out.clone().unwrap_or_else(|| {
        let beside = options.model.parent().map(Path::to_path_buf);
        beside.unwrap_or_default()
    });
    std::fs::create_dir_all(&out)
        .map_err(|e| TrainError::Failed(format!("{}: cannot create: {e}", out.display())))?;
    let cache_dir = options
        .cache
        .clone()
        .unwrap_or_else(|| out.join("feature-cache"));
    let mut cache = FeatureCache::new(&cache_dir, &model).map_err(TrainError::Failed)?;
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
        match Prepared::recording(&mut cache, &model, clip, class as i64, false) {
            Ok(prepared) => clips.extend(prepared),
            Err(reason) => skipped.push(Skip {
                file: clip.name(),
                reason,
            }),
        }
    }
    bar.finish_and_clear();
    if clips.is_empty() {
        return Err(TrainError::Failed(format!(
            "{}: no clip to evaluate ({} skipped)",
            dataset.root.display(),
            skipped.len()
        )));
    }
    let (scores, _) =
        evaluate_prepared(&model, &clips, &model.spec.classes).map_err(TrainError::Failed)?;
    let one_second = if options.one_second {
        Some(one_second_scores(&model, &clips, &model.spec.classes).map_err(TrainError::Failed)?)
    } else {
        None
    };
    let report = EvaluationReport {
        model: options.model.display().to_string(),
        model_id: model.id.clone(),
        dataset: dataset.root.display().to_string(),
        protocol: "clip (10 s)",
        scores,
        scores_1s: one_second,
        skipped,
    };
    write_report(report, &out, &options.model)
}

/// `evaluation.json`, the confusion matrix and, when the training log lies beside the
/// model, the learning curves.
fn write_report(
    report: EvaluationReport,
    out: &Path,
    model: &Path,
) -> Result<Evaluation, TrainError> {
    let path = out.join("evaluation.json");
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&path, format!("{text}\n"))
        .map_err(|e| TrainError::Failed(format!("{}: {e}", path.display())))?;
    let mut plots = vec![out.join("confusion.png")];
    plot::confusion(&report.scores, &plots[0]).map_err(TrainError::Failed)?;
    let history = read_log(&model.with_file_name("train-log.jsonl"));
    if !history.is_empty() {
        let curves = out.join("learning-curves.png");
        plot::learning_curves(&history, &curves).map_err(TrainError::Failed)?;
        plots.push(curves);
    }
    Ok(Evaluation {
        report,
        path,
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
