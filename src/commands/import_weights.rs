//! `avscene import-weights`: public PyTorch weights → an avscene model file.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::context::{CommandError, Result, print};
use crate::model::import::{Source, import_all};
use crate::model::{Model, ModelSpec, PROFILES};

/// Build a model file from PyTorch checkpoints you have (`.pth` in torch.save's zip or
/// legacy format, or safetensors); parts no input covers keep a fresh initialisation.
/// `avscene fetch-weights` downloads the public ones and does this for you.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The model file to write (.safetensors).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// torchvision ResNet50 ImageNet weights (state dict; `fc.*` is dropped).
    #[arg(long = "resnet50", value_name = "FILE")]
    pub resnet: Option<PathBuf>,
    /// torchopenl3 mel256 / env / 512 weights (state dict).
    #[arg(long, value_name = "FILE")]
    pub openl3: Option<PathBuf>,
    /// A whole dual-stream checkpoint from the authors' code (Mixed_model state dict).
    #[arg(long, value_name = "FILE")]
    pub dual_stream: Option<PathBuf>,
    /// Architecture to build: full (the paper's) or small.
    #[arg(long, default_value = "full")]
    pub profile: String,
    /// Class labels, comma-separated, in output order [default: the ten TAU scenes].
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: ImportArgs) -> Result {
    let inputs: Vec<(PathBuf, Source)> = [
        (args.resnet, Source::Resnet),
        (args.openl3, Source::OpenL3),
        (args.dual_stream, Source::DualStream),
    ]
    .into_iter()
    .filter_map(|(path, source)| path.map(|p| (p, source)))
    .collect();
    let input = |reason: String| CommandError::Input(reason);
    if inputs.is_empty() {
        return Err(input(
            "import-weights: give at least one of --resnet50, --openl3, --dual-stream".into(),
        ));
    }
    if args.out.exists() && !args.force {
        return Err(input(format!(
            "{} exists; pass --force to replace it",
            args.out.display()
        )));
    }
    let mut spec = ModelSpec::profile(&args.profile).ok_or_else(|| {
        input(format!(
            "--profile: unknown profile '{}' (known: {})",
            args.profile,
            PROFILES.join(", ")
        ))
    })?;
    if let Some(classes) = args.classes {
        spec.classes = classes;
    }
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(input(format!("--classes: {}", problems.join("; "))));
    }
    let mut model = Model::fresh(spec, tch::Device::Cpu);
    // A checkpoint that does not fit is the input's fault; a file that cannot be written
    // is a failure.
    let report = import_all(&mut model, &inputs).map_err(|e| input(e.to_string()))?;
    model
        .save(&args.out)
        .map_err(|e| CommandError::Failed(e.to_string()))?;
    let mut text = String::new();
    for (file, count) in &report.imported {
        let _ = writeln!(text, "imported {count} tensors from {file}");
    }
    for (file, names) in &report.unused {
        let _ = writeln!(
            text,
            "note: {file}: {} left out, unused by the model (an ImageNet classifier): {}",
            names.len(),
            names.join(", ")
        );
    }
    for part in &report.untouched_parts {
        let _ = writeln!(
            text,
            "left as initialised (train it with avscene train): {part}"
        );
    }
    let _ = writeln!(text, "wrote {}", args.out.display());
    print(text);
    Ok(())
}
