//! `avscene synth-dataset`: a generated audio-visual scene set in the TAU layout.

use super::context::{CommandError, Result, println};
use crate::train::{SynthOptions, synth_label};

pub fn run(options: SynthOptions) -> Result {
    let n = crate::train::synth_dataset(&options).map_err(CommandError::Input)?;
    let labels: Vec<String> = (0..options.classes).map(synth_label).collect();
    println(format!(
        "wrote {n} clips of {} classes to {} ({})",
        options.classes,
        options.out.display(),
        labels.join(", ")
    ));
    Ok(())
}
