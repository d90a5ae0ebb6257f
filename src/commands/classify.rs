//! `avscene classify`: one media file, a label per 10 s window and for the whole file.

use std::path::PathBuf;

use super::context::{CommandError, DeviceArg, Result, report};
use crate::infer::{ClassifyError, classify_file};

/// Classify one media file (sound and picture in one container: mp4, mkv, webm …): each
/// 10 s window (a second apart) and the whole file (mean probabilities).
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// The media file.
    pub file: PathBuf,
    /// The model file (.safetensors).
    #[arg(long, short, value_name = "MODEL")]
    pub model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: ClassifyArgs) -> Result {
    let device = args.device.resolve()?;
    let classification = classify_file(&args.model, &args.file, device).map_err(|e| match e {
        ClassifyError::Model(e) => CommandError::Input(format!("--model: {e}")),
        decode @ ClassifyError::Decode { .. } => CommandError::Input(decode.to_string()),
    })?;
    report(&classification, args.json)
}
