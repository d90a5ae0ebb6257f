//! `avscene train`: a model trained on a dataset.

use super::context::{DeviceArg, Result, println, stop_on_signals};
use crate::train::TrainOptions;

/// Train a model on a dataset, TAU or folder-per-label (checkpoints, best model,
/// training log); --init fine-tunes an existing model.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub options: TrainOptions,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(mut args: TrainArgs) -> Result {
    args.options.device = args.device.resolve()?;
    // Ctrl-C (or SIGTERM) ends the batch, saves a checkpoint and exits.
    let summary = crate::train::train(&args.options, stop_on_signals())?;
    for s in &summary.skipped {
        eprintln!("skipped {}: {}", s.file, s.reason);
    }
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    if let Some(best) = &summary.best {
        println(format!(
            "best epoch {}: validation accuracy {:.1} %, log-loss {:.4} → {}",
            best.epoch,
            best.val_accuracy * 100.0,
            best.val_loss,
            args.options.out.join("best.safetensors").display()
        ));
    }
    println(format!(
        "{} epoch(s) done, {} clip(s) skipped, peak resident memory {:.0} MB{}",
        summary.epochs_done,
        summary.skipped.len(),
        crate::support::process::peak_rss_bytes().unwrap_or(0) as f64 / 1e6,
        if summary.interrupted {
            "; interrupted: continue with --resume"
        } else {
            ""
        }
    ));
    Ok(())
}
