//! `avscene synth-dataset`, `train` and `evaluate`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::fail;
use crate::model::DeviceSpec;
use crate::train::{EvaluateOptions, SynthOptions, TrainError, TrainOptions, synth_label};

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

fn train_failed(e: TrainError) -> ExitCode {
    eprintln!("avscene: {e}");
    match e {
        TrainError::Dataset(_) => ExitCode::from(EXIT_INPUT),
        TrainError::Other(_) => ExitCode::FAILURE,
    }
}

pub fn train(mut options: TrainOptions, device_spec: DeviceSpec) -> ExitCode {
    options.device = match device(device_spec) {
        Ok(d) => d,
        Err(code) => return code,
    };
    // Ctrl-C (or SIGTERM) ends the batch, saves a checkpoint and exits.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    match crate::train::train(&options, stop) {
        Ok(summary) => {
            for s in &summary.skipped {
                eprintln!("skipped {}: {}", s.file, s.reason);
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
                "{} epoch(s) done, {} clip(s) skipped{}",
                summary.epochs_done,
                summary.skipped.len(),
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

pub struct EvaluateArgs {
    pub model: PathBuf,
    pub data: PathBuf,
    pub out: Option<PathBuf>,
    pub cache: Option<PathBuf>,
    pub json: bool,
    pub one_second: bool,
    pub device: DeviceSpec,
}

pub fn evaluate(args: EvaluateArgs) -> ExitCode {
    let device = match device(args.device) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let options = EvaluateOptions {
        model: args.model,
        data: args.data,
        out: args.out,
        cache: args.cache,
        seed: 0,
        device,
        one_second: args.one_second,
    };
    match crate::train::evaluate(&options) {
        Ok(evaluation) => {
            if args.json {
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
