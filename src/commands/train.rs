//! `avscene synth-dataset`, `train` and `evaluate`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::fail;
use crate::model::DeviceSpec;
use crate::train::{
    EvaluateOptions, RecordOptions, SynthOptions, TrainError, TrainOptions, synth_label,
};

/// Usage mistakes in the dataset or options: exit 2, as for configuration errors.
const EXIT_INPUT: u8 = 2;

pub fn synth_dataset(options: SynthOptions) -> ExitCode {
    match crate::train::synth_dataset(&options) {
        Ok(n) => {
            let labels: Vec<String> = (0..options.classes).map(synth_label).collect();
            println!(
                "wrote {n} clips of {} classes to {} ({})",
                options.classes,
                options.out.display(),
                labels.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn device(spec: DeviceSpec) -> Result<tch::Device, ExitCode> {
    spec.resolve().map_err(|e| {
        eprintln!("avscene: --device: {e}");
        ExitCode::from(EXIT_INPUT)
    })
}

/// A flag that SIGINT (Ctrl-C) or SIGTERM raises: the work in hand finishes, what is done
/// is kept.
fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    stop
}

fn train_failed(e: TrainError) -> ExitCode {
    eprintln!("avscene: {e}");
    match e {
        TrainError::Dataset(_) | TrainError::Model(_) | TrainError::Options(_) => {
            ExitCode::from(EXIT_INPUT)
        }
        TrainError::Other(_) => ExitCode::FAILURE,
    }
}

pub fn train(mut options: TrainOptions, device_spec: DeviceSpec) -> ExitCode {
    options.device = match device(device_spec) {
        Ok(d) => d,
        Err(code) => return code,
    };
    // Ctrl-C (or SIGTERM) ends the batch, saves a checkpoint and exits.
    let stop = stop_on_signals();
    match crate::train::train(&options, stop) {
        Ok(summary) => {
            for s in &summary.skipped {
                eprintln!("skipped {}: {}", s.file, s.reason);
            }
            for note in &summary.notes {
                eprintln!("note: {note}");
            }
            if let Some(best) = &summary.best {
                println!(
                    "best epoch {}: validation accuracy {:.1} %, log-loss {:.4} → {}",
                    best.epoch,
                    best.val_accuracy * 100.0,
                    best.val_loss,
                    options.out.join("best.safetensors").display()
                );
            }
            println!(
                "{} epoch(s) done, {} clip(s) skipped, peak resident memory {:.0} MB{}",
                summary.epochs_done,
                summary.skipped.len(),
                crate::support::process::peak_rss_bytes().unwrap_or(0) as f64 / 1e6,
                if summary.interrupted {
                    "; interrupted: continue with --resume"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => train_failed(e),
    }
}

pub fn evaluate(mut options: EvaluateOptions, json: bool, device_spec: DeviceSpec) -> ExitCode {
    options.device = match device(device_spec) {
        Ok(d) => d,
        Err(code) => return code,
    };
    match crate::train::evaluate(&options) {
        Ok(evaluation) => {
            if json {
                match std::fs::read_to_string(&evaluation.report) {
                    Ok(text) => print!("{text}"),
                    Err(e) => return fail(format!("{}: {e}", evaluation.report.display())),
                }
            } else {
                println!("clip protocol (10 s):");
                print!("{}", evaluation.scores.table());
                if let Some(scores) = &evaluation.one_second {
                    println!("1-s protocol:");
                    print!("{}", scores.table());
                }
                for s in &evaluation.skipped {
                    println!("skipped {}: {}", s.file, s.reason);
                }
                println!("report: {}", evaluation.report.display());
                for p in &evaluation.plots {
                    println!("plot: {}", p.display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => train_failed(e),
    }
}

pub fn classify(model: PathBuf, file: PathBuf, json: bool, device_spec: DeviceSpec) -> ExitCode {
    let device = match device(device_spec) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let result = match crate::train::classify_file(&model, &file, device) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let best = crate::train::metrics::argmax(&result.mean);
    if json {
        let named = |p: &[f32]| -> serde_json::Map<String, serde_json::Value> {
            result
                .classes
                .iter()
                .cloned()
                .zip(p.iter().map(|v| serde_json::json!(v)))
                .collect()
        };
        let windows: Vec<serde_json::Value> = result
            .windows
            .iter()
            .map(|(start, p)| {
                serde_json::json!({
                    "start_s": start,
                    "label": result.classes[crate::train::metrics::argmax(p)],
                    "probabilities": named(p),
                })
            })
            .collect();
        let report = serde_json::json!({
            "file": file.display().to_string(),
            "label": result.classes[best],
            "probabilities": named(&result.mean),
            "windows": windows,
        });
        println!("{report:#}");
        return ExitCode::SUCCESS;
    }
    for (start, p) in &result.windows {
        let i = crate::train::metrics::argmax(p);
        println!(
            "{start:7.1}–{:.1} s  {} ({:.2})",
            start + 10.0,
            result.classes[i],
            p[i]
        );
    }
    println!(
        "{}: {} ({:.2}, mean of {} window(s))",
        file.display(),
        result.classes[best],
        result.mean[best],
        result.windows.len()
    );
    let mut order: Vec<usize> = (0..result.classes.len()).collect();
    order.sort_by(|&a, &b| result.mean[b].total_cmp(&result.mean[a]));
    for i in order {
        println!("  {:20} {:.3}", result.classes[i], result.mean[i]);
    }
    ExitCode::SUCCESS
}

/// `avscene dataset-info`: labels, clips, duration and problems of a dataset. Exit 0 when
/// it can train (problems or not), 2 when it cannot.
pub fn dataset_info(data: PathBuf, json: bool) -> ExitCode {
    let info = match crate::train::dataset::inspect(&data, 0) {
        Ok(info) => info,
        Err(e) => return train_failed(TrainError::Dataset(e)),
    };
    if json {
        println!("{:#}", serde_json::json!(info));
    } else {
        let minutes = |s: f64| format!("{}:{:04.1}", (s / 60.0).floor(), s % 60.0);
        println!(
            "{}: {} layout, {} label(s), {} recording(s), {} clip(s) of 10 s, {} (min:s)",
            info.root.display(),
            info.layout,
            info.labels.len(),
            info.recordings,
            info.clips,
            minutes(info.seconds)
        );
        println!(
            "  {:24} {:>10} {:>7} {:>10} {:>9}",
            "label", "recordings", "clips", "duration", "locations"
        );
        for (label, l) in &info.labels {
            println!(
                "  {label:24} {:>10} {:>7} {:>10} {:>9}",
                l.recordings,
                l.clips,
                minutes(l.seconds),
                l.locations
            );
        }
        if let Some(split) = &info.split {
            println!("validation: {split}");
        }
        if !info.problems.is_empty() {
            println!("problems ({}):", info.problems.len());
            for p in &info.problems {
                println!("  {}: {}", p.file, p.reason);
            }
        }
        for note in &info.notes {
            println!("note: {note}");
        }
    }
    match &info.cannot_train {
        Some(reason) => {
            eprintln!("avscene: cannot train on it: {reason}");
            ExitCode::from(EXIT_INPUT)
        }
        None => ExitCode::SUCCESS,
    }
}

/// `avscene record`: labelled clips from a configured stream into a dataset folder.
pub fn record(config: Option<&std::path::Path>, options: RecordOptions) -> ExitCode {
    if let Err(e) = options.validate() {
        eprintln!("avscene: {e}");
        return ExitCode::from(EXIT_INPUT);
    }
    let settings = match crate::config::Settings::load(config) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("avscene: invalid configuration: {error}");
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let spec = match super::pick_stream(&settings, options.stream.as_deref()) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("avscene: --stream: {e}");
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let stop = stop_on_signals();
    let target = crate::train::record::clips_in_minutes(options.minutes);
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
        stop,
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
    match result {
        Ok(summary) => {
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
            println!("{line}");
            if summary.ended.is_some() && summary.written.len() < target && !summary.interrupted {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(e),
    }
}
