//! `avscene record`: labelled clips from a configured stream into a dataset folder.

use super::capture::pick_stream;
use super::context::{CommandError, ConfigArg, Result, println, stop_on_signals};
use crate::train::{RecordError, RecordOptions};

/// Record labelled 10 s clips from a configured stream into a folder-per-label dataset
/// (WAV + lossless MKV per clip, recordings.csv), to train on your own scenes.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub options: RecordOptions,
}

pub fn run(args: RecordArgs) -> Result {
    let options = args.options;
    options
        .validate()
        .map_err(|e| CommandError::Input(e.to_string()))?;
    let settings = args.config.load()?;
    settings.log_warnings();
    let spec = pick_stream(&settings, options.stream.as_deref())?;
    let target = crate::record::clips_in_minutes(options.minutes);
    eprintln!(
        "recording {target} clip(s) of 10 s labelled '{}' from stream '{}' into {}; the first \
         comes after 10 s; Ctrl-C stops and keeps what was recorded",
        options.label,
        spec.name,
        options.out.join(&options.label).display()
    );
    let bar = crate::support::progress(target as u64, "recording");
    let result = crate::train::record(
        &options,
        spec,
        settings.config.capture.clone(),
        stop_on_signals(),
        |line| {
            if line.starts_with("clip ") {
                bar.inc(1);
            }
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        },
    );
    bar.finish_and_clear();
    let summary = result.map_err(|e| match e {
        RecordError::Option(_) => CommandError::Input(e.to_string()),
        other => CommandError::Failed(other.to_string()),
    })?;
    let mut line = format!(
        "recorded {} clip(s) into {}",
        summary.written.len(),
        options.out.display()
    );
    if summary.gappy > 0 {
        line.push_str(&format!(
            "; {} window(s) left out where the source stalled",
            summary.gappy
        ));
    }
    if summary.interrupted {
        line.push_str("; interrupted: what was recorded is kept");
    }
    if let Some(reason) = &summary.ended {
        line.push_str(&format!("; stopped early: {reason}"));
    }
    println(line);
    if summary.ended.is_some() && summary.written.len() < target && !summary.interrupted {
        return Err(CommandError::Failed(summary.ended.unwrap_or_default()));
    }
    Ok(())
}
