//! `avscene dataset-info`: labels, clips, duration and problems of a dataset.

use std::fmt;
use std::path::PathBuf;

use super::context::{CommandError, Result, report};
use crate::train::dataset::{DatasetInfo, inspect};

/// Summarise a dataset (TAU or folder-per-label): labels, recordings, 10 s clips,
/// duration, locations, and the problems found. Exit 2 when it cannot train.
#[derive(Debug, clap::Args)]
pub struct DatasetInfoArgs {
    /// The dataset directory.
    pub data: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DatasetInfoArgs) -> Result {
    let info = inspect(&args.data, 0).map_err(crate::train::TrainError::Dataset)?;
    report(&info, args.json)?;
    match &info.cannot_train {
        Some(reason) => Err(CommandError::Input(format!("cannot train on it: {reason}"))),
        None => Ok(()),
    }
}

impl fmt::Display for DatasetInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = |s: f64| format!("{}:{:04.1}", (s / 60.0).floor(), s % 60.0);
        writeln!(
            f,
            "{}: {} layout, {} label(s), {} recording(s), {} clip(s) of 10 s, {} (min:s)",
            self.root.display(),
            self.layout,
            self.labels.len(),
            self.recordings,
            self.clips,
            minutes(self.seconds)
        )?;
        writeln!(
            f,
            "  {:24} {:>10} {:>7} {:>10} {:>9}",
            "label", "recordings", "clips", "duration", "locations"
        )?;
        for (label, l) in &self.labels {
            writeln!(
                f,
                "  {label:24} {:>10} {:>7} {:>10} {:>9}",
                l.recordings,
                l.clips,
                minutes(l.seconds),
                l.locations
            )?;
        }
        if let Some(split) = &self.split {
            writeln!(f, "validation: {split}")?;
        }
        if !self.problems.is_empty() {
            writeln!(f, "problems ({}):", self.problems.len())?;
            for p in &self.problems {
                writeln!(f, "  {}: {}", p.file, p.reason)?;
            }
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
