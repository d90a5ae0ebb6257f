//! `avscene model info`: what a model file (or a fresh model) holds.

use std::fmt;

use serde::Serialize;

use super::context::{ModelChoice, Result, report, thousands};
use crate::features::FeatureSpec;
use crate::model::{ModelSpec, OPENL3_EMBEDDING, PartCounts, Provenance};

/// Describe a model: classes, input and output shapes, trainable parameters of each
/// part, provenance. Without --model, a freshly initialised model of --profile.
#[derive(Debug, clap::Args)]
pub struct ModelInfoArgs {
    #[command(flatten)]
    pub model: ModelChoice,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `model info` reports.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    /// The file, or none for a fresh model.
    pub file: Option<String>,
    pub id: String,
    pub device: String,
    pub spec: ModelSpec,
    pub features: FeatureSpec,
    pub provenance: Provenance,
    pub parameters: Parameters,
    pub inputs: Inputs,
    /// (B, classes) logits.
    pub output: (&'static str, i64),
}

#[derive(Debug, Serialize)]
pub struct Parameters {
    #[serde(flatten)]
    pub parts: PartCounts,
    pub total_without_openl3: i64,
}

/// Input shapes; "B" is the batch.
#[derive(Debug, Serialize)]
pub struct Inputs {
    pub audio_frames: (&'static str, i64, i64),
    pub openl3_embeddings: (&'static str, i64, i64),
    pub images: (&'static str, i64, i64, i64, i64),
}

pub fn run(args: ModelInfoArgs) -> Result {
    let model = args.model.open()?;
    let parts = model.parameter_counts();
    let f = &model.features;
    let report_of = ModelReport {
        file: args.model.model.as_ref().map(|p| p.display().to_string()),
        id: model.id.clone(),
        device: format!("{:?}", model.vs.device()).to_lowercase(),
        spec: model.spec.clone(),
        features: f.clone(),
        provenance: model.provenance.clone(),
        parameters: Parameters {
            parts,
            total_without_openl3: parts.total_without_openl3(),
        },
        inputs: Inputs {
            audio_frames: ("B", f.audio_frames, f.frame_samples),
            openl3_embeddings: ("B", f.audio_frames, OPENL3_EMBEDDING),
            images: ("B", f.images, 3, f.image_size, f.image_size),
        },
        output: ("B", model.spec.num_classes()),
    };
    report(&report_of, args.json)
}

impl fmt::Display for ModelReport {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, f, p) = (&self.spec, &self.features, &self.provenance);
        let source = match &self.file {
            Some(file) => file.clone(),
            None => format!(
                "none: a freshly initialised '{}' model (random weights)",
                s.profile
            ),
        };
        writeln!(out, "model:     {source}")?;
        writeln!(
            out,
            "id:        {}  (source: {}, avscene {})",
            self.id, p.source, p.avscene_version
        )?;
        writeln!(
            out,
            "profile:   {}  (dim {}, image backbone {:?} {:?} width {})",
            s.profile, s.dim, s.backbone.block, s.backbone.layers, s.backbone.width
        )?;
        writeln!(
            out,
            "classes:   {} — {}",
            s.classes.len(),
            s.classes.join(", ")
        )?;
        writeln!(out, "device:    {}", self.device)?;
        writeln!(
            out,
            "inputs:    audio (B, {}, {}) mono {} Hz frames → OpenL3 → (B, {}, {OPENL3_EMBEDDING})",
            f.audio_frames, f.frame_samples, f.sample_rate, f.audio_frames
        )?;
        writeln!(
            out,
            "           images (B, {}, 3, {}, {}) RGB, normalised",
            f.images, f.image_size, f.image_size
        )?;
        writeln!(
            out,
            "output:    (B, {}) logits (mean + max over {} frames); softmax gives probabilities",
            s.num_classes(),
            f.images
        )?;
        writeln!(out, "trainable parameters:")?;
        let c = &self.parameters.parts;
        for (part, count, remark) in [
            ("OpenL3 network", c.openl3, "  (frozen feature extractor)"),
            ("audio branch", c.audio_branch, ""),
            ("image branch", c.image_branch, ""),
            ("fusion + classifier", c.fusion, ""),
            (
                "total without OpenL3",
                self.parameters.total_without_openl3,
                "",
            ),
        ] {
            writeln!(out, "  {part:<20}  {:>12}{remark}", thousands(count))?;
        }
        writeln!(
            out,
            "provenance: {} (written by avscene {}, {})",
            p.source,
            p.avscene_version,
            created(p.created_unix)
        )?;
        for (key, value) in &p.details {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let text = if text.chars().count() > 160 {
                let head: String = text.chars().take(160).collect();
                format!("{head}… (--json shows it whole)")
            } else {
                text
            };
            writeln!(out, "  {key}: {text}")?;
        }
        Ok(())
    }
}

/// A Unix time as RFC 3339 UTC.
fn created(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}
