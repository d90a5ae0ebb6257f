//! `avscene evaluate`: DCASE scores of a model on a dataset's evaluation clips.

use super::context::{DeviceArg, Result, println, report};
use crate::train::EvaluateOptions;

/// Score a model on a dataset's evaluation clips: DCASE accuracy and log-loss per
/// class and overall, confusion matrix, JSON report and PNG plots.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub options: EvaluateOptions,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(mut args: EvaluateArgs) -> Result {
    args.options.device = args.device.resolve()?;
    let evaluation = crate::train::evaluate(&args.options)?;
    report(&evaluation.report, args.json)?;
    if !args.json {
        println(format!("report: {}", evaluation.path.display()));
        for p in &evaluation.plots {
            println(format!("plot: {}", p.display()));
        }
    }
    Ok(())
}
