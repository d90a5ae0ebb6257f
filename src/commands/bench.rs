//! `avscene bench`: the inference engine on synthetic windows.

use super::context::{CommandError, ModelChoice, Result, print};
use crate::infer::bench::{
    BenchPlan, BenchRecord, HopStages, OverloadRecord, PrecisionAccuracy, hop_stages, overload,
    precision_accuracy, run as measure,
};
use crate::infer::{
    InferenceConfig, Precision, image_precision_in_use, precision_in_use, set_image_precision,
    set_precision,
};

/// Measure inference on synthetic windows (no capture, no broker): windows/s, latency
/// p50/p99 and real-time factor for the naive path (every window from scratch) and the
/// cached path, per batch size and thread count; then an overload run (memory and drops
/// when fed faster than it computes).
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelChoice,
    /// A short run: batch 1 naive, batches 1 and 4 cached, all cores, few iterations.
    #[arg(long)]
    pub quick: bool,
    /// One JSON object per measured configuration, one per line.
    #[arg(long)]
    pub json: bool,
    /// Batch sizes, comma-separated [default: naive 1,4; cached 1,4,16].
    #[arg(long, value_delimiter = ',')]
    pub batches: Option<Vec<usize>>,
    /// libtorch thread counts, comma-separated [default: 1 and all cores].
    #[arg(long, value_delimiter = ',')]
    pub threads: Option<Vec<usize>>,
    /// OpenL3 every N × 0.1 s (1, 2, 5, 10), as inference.audio_stride.
    #[arg(long, default_value_t = 1)]
    pub audio_stride: u64,
    /// STFT by FFT, as inference.fast_stft.
    #[arg(long)]
    pub fast_stft: bool,
    /// Skip the overload run (--json always skips it).
    #[arg(long)]
    pub no_overload: bool,
    /// Run the encoders' convolutions (OpenL3's stack, the ResNet trunk) in the plain
    /// NCHW layout rather than oneDNN's blocked one (the default on the CPU), to compare.
    #[arg(long)]
    pub plain_layout: bool,
    /// OpenL3's convolution stack in int8, as inference.openl3_precision = "int8"; then
    /// measure its accuracy against float32 on generated scenes (embedding cosine, the
    /// whole model's top-1 agreement).
    #[arg(long, conflicts_with = "bf16")]
    pub int8: bool,
    /// OpenL3's convolution stack in bfloat16, as inference.openl3_precision =
    /// "bfloat16" (CPUs with bf16 instructions); then its accuracy, as for --int8.
    #[arg(long)]
    pub bf16: bool,
    /// The ResNet image trunk in bfloat16, as inference.image_precision = "bfloat16"
    /// (CPUs with bf16 instructions); then its accuracy, as for --int8.
    #[arg(long, conflicts_with = "plain_layout")]
    pub image_bf16: bool,
}

pub fn run(args: BenchArgs) -> Result {
    if ![1, 2, 5, 10].contains(&args.audio_stride) {
        return Err(CommandError::Input(format!(
            "--audio-stride must be 1, 2, 5 or 10, not {}",
            args.audio_stride
        )));
    }
    if args.batches.as_ref().is_some_and(|b| b.contains(&0))
        || args.threads.as_ref().is_some_and(|t| t.contains(&0))
    {
        return Err(CommandError::Input(
            "--batches and --threads take positive numbers".into(),
        ));
    }
    let model = args.model.open()?;
    model.net.set_blocked(!args.plain_layout);
    let config = InferenceConfig {
        audio_stride: args.audio_stride,
        fast_stft: args.fast_stft,
        openl3_precision: match (args.int8, args.bf16) {
            (true, _) => Precision::Int8,
            (_, true) => Precision::Bfloat16,
            _ => Precision::Float32,
        },
        image_precision: match args.image_bf16 {
            true => Precision::Bfloat16,
            false => Precision::Float32,
        },
        ..Default::default()
    };
    let input = |flag: &'static str| move |e: String| CommandError::Input(format!("{flag}: {e}"));
    let openl3_flag = if args.int8 { "--int8" } else { "--bf16" };
    let reduced = config.openl3_precision != Precision::Float32 || args.image_bf16;
    if config.openl3_precision != Precision::Float32 {
        set_precision(&model.net.openl3, config.openl3_precision).map_err(input(openl3_flag))?;
    }
    if args.image_bf16 {
        set_image_precision(&model.net.video, config.image_precision)
            .map_err(input("--image-bf16"))?;
    }
    // The accuracy run's failure names the flag it measures first.
    let flag = match config.openl3_precision {
        Precision::Float32 => "--image-bf16",
        _ => openl3_flag,
    };
    let plan = BenchPlan::new(args.quick, args.batches.clone(), args.threads.clone());
    if !args.json {
        print(header(&model, &args));
    }
    let json = args.json;
    let (records, model) = measure(model, &config, &plan, |r| {
        if json {
            print(format!(
                "{}\n",
                serde_json::to_string(r).unwrap_or_default()
            ));
        } else {
            print(row(r));
        }
    });
    // Where a cached hop's time goes, per thread count.
    let mut model = model;
    if !plan.cached_batches.is_empty() {
        for &threads in &plan.threads {
            let (stages, back) = hop_stages(model, &config, threads, plan.cached_iterations);
            model = back;
            if json {
                print(format!(
                    "{}\n",
                    serde_json::to_string(&stages).unwrap_or_default()
                ));
            } else {
                let hop_ms = records
                    .iter()
                    .find(|r| r.path == "cached" && r.batch == 1 && r.threads == threads)
                    .map(|r| r.p50_ms);
                print(stage_rows(&stages, threads == plan.threads[0], hop_ms));
            }
        }
    }
    let model = if reduced {
        // Small enough to add a minute or two to the run: 4 scenes × 3 windows (2 × 2 quick).
        let (streams, windows) = if args.quick { (2, 2) } else { (4, 3) };
        let threads = plan.threads.iter().copied().max().unwrap_or(1);
        tch::set_num_threads(threads as i32);
        let (accuracy, model) = precision_accuracy(model, &config, streams, windows);
        let accuracy = accuracy.map_err(input(flag))?;
        if json {
            let key = match (accuracy.precision, accuracy.image_precision) {
                ("float32", image) => format!("image_{image}_accuracy"),
                (openl3, _) => format!("{openl3}_accuracy"),
            };
            print(format!("{}\n", serde_json::json!({ key: accuracy })));
        } else {
            print(accuracy_line(&accuracy));
        }
        model
    } else {
        model
    };
    if json {
        return Ok(());
    }
    let best = |path: &str| {
        records
            .iter()
            .filter(|r| r.path == path && r.batch == 1)
            .map(|r| r.windows_per_s)
            .fold(0.0, f64::max)
    };
    let (naive, cached) = (best("naive"), best("cached"));
    if naive > 0.0 && cached > 0.0 {
        print(format!(
            "cached / naive at batch 1, 1 s hop: {:.1}×\n",
            cached / naive
        ));
    }
    if !args.no_overload && plan.overload_s > 0.0 {
        let threads = plan.threads.iter().copied().max().unwrap_or(1);
        let o = overload(model, &config, threads, cached.max(0.1), plan.overload_s);
        print(overload_line(&o));
    }
    Ok(())
}

fn header(model: &crate::model::Model, args: &BenchArgs) -> String {
    let cpu = crate::support::cpu::model_name().unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stft = if args.fast_stft {
        "FFT"
    } else {
        "kernel convolution"
    };
    let peak = match crate::support::cpu::CpuPeak::detect() {
        Some(p) => {
            let all = p.physical_cores;
            let made_of = match (p.fma_per_ns(all), p.fma_per_cycle(all)) {
                (Some(rate), Some(per_cycle)) => format!(
                    "{all} cores × {rate:.2} G {}-bit {} FMAs/s × {} FLOP, timed: {per_cycle:.2} a cycle at {:.2} GHz",
                    p.lanes * 32,
                    p.isa,
                    p.lanes * 2,
                    p.ghz(all),
                ),
                _ => format!(
                    "{all} cores × {:.2} GHz × {} FLOP/cycle, {} on {}-bit units, two per core assumed",
                    p.ghz(all),
                    p.flop_per_cycle,
                    p.isa,
                    p.unit_bits,
                ),
            };
            let reduced: String = [("bfloat16", &p.bfloat16), ("int8", &p.int8)]
                .iter()
                .filter_map(|(precision, peak)| {
                    let peak = peak.as_ref()?;
                    Some(format!(
                        "; {precision} peak {:.0} G operations/s on all, {:.0} on one ({}, timed)",
                        p.gops(precision, all)?,
                        peak.gops_one,
                        peak.instructions,
                    ))
                })
                .collect();
            format!(
                "float32 peak {:.0} GFLOP/s on all {all} physical core(s) ({made_of}), {:.0} on one ({:.2} GHz); clocks measured, nominal {:.2} GHz{reduced}\n",
                p.gflops(all),
                p.gflops(1),
                p.ghz(1),
                p.nominal_ghz,
            )
        }
        None => "float32 peak: unknown (no /proc/cpuinfo)\n".into(),
    };
    let features = crate::features::FeatureSpec::default();
    let per_frame = crate::model::flops::openl3_frame(&model.spec, &features, args.fast_stft) / 1e9;
    let per_image = crate::model::flops::resnet_image(&model.spec, features.image_size) / 1e9;
    let name = |blocked: bool| {
        if blocked {
            "oneDNN blocked"
        } else {
            "plain NCHW"
        }
    };
    let precision = precision_in_use(&model.net.openl3);
    let layout = match precision {
        Precision::Int8 => "channels-last",
        _ => name(model.net.openl3.uses_blocked()),
    };
    let image_layout = name(model.net.video.uses_blocked());
    let precision = precision.describe();
    let image_precision = image_precision_in_use(&model.net.video).describe();
    format!(
        "avscene bench: model {} ({}), device {:?}, {cores} CPU core(s) {cpu}, audio stride {} × 0.1 s, STFT by {stft}, OpenL3 layout {layout} in {precision}, image layout {image_layout} in {image_precision}\n\
         {peak}\
         encoders: {per_frame:.1} GFLOP per OpenL3 frame, {per_image:.1} per image; a cached hop (one stream-second) encodes {} frames + 1 image, a naive window {} frames + {} images\n\
         {:<7} {:>5} {:>7} {:>12} {:>10} {:>10} {:>8} {:>9} {:>7}\n",
        model.id,
        model.spec.profile,
        model.vs.device(),
        args.audio_stride,
        10 / args.audio_stride.max(1),
        features.audio_frames,
        features.images,
        "path",
        "batch",
        "threads",
        "windows/s",
        "p50 ms",
        "p99 ms",
        "RTF",
        "GFLOP/s",
        "% peak"
    )
}

fn row(r: &BenchRecord) -> String {
    let peak = r
        .percent_of_peak()
        .map_or_else(|| "-".to_string(), |p| format!("{p:.0} %"));
    format!(
        "{:<7} {:>5} {:>7} {:>12.4} {:>10.1} {:>10.1} {:>8.3} {:>9.1} {:>7}\n",
        r.path, r.batch, r.threads, r.windows_per_s, r.p50_ms, r.p99_ms, r.rtf, r.gflop_per_s, peak
    )
}

/// The stage table's rows for one thread count (its header first when `header`), and
/// their sum beside the cached batch-1 row's p50 (`hop_ms`).
fn stage_rows(s: &HopStages, header: bool, hop_ms: Option<f64>) -> String {
    let mut out = String::new();
    if header {
        out += &format!(
            "{:<24} {:>7}  {:<9} {:>9} {:>8} {:>8} {:>7}   (median of {})\n",
            "cached hop by stage",
            "threads",
            "precision",
            "ms/hop",
            "GFLOP",
            "GFLOP/s",
            "% peak",
            s.iterations
        );
    }
    let or_dash = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".into(), f);
    for stage in &s.stages {
        let name = match stage.stage {
            "spectrogram" => "log-mel spectrograms",
            "openl3_convolutions" => "OpenL3 convolutions",
            "image" => "image branch",
            other => other,
        };
        out += &format!(
            "  {name:<22} {:>7}  {:<9} {:>9.1} {:>8} {:>8} {:>7}\n",
            s.threads,
            stage.precision,
            stage.ms,
            or_dash(stage.gflop, &|g| format!("{g:.1}")),
            or_dash(stage.gflop_per_s, &|g| format!("{g:.1}")),
            or_dash(stage.percent_of_peak, &|p| format!("{p:.0} %")),
        );
    }
    if let Some(hop) = hop_ms {
        let stages: f64 = s.stages.iter().map(|stage| stage.ms).sum();
        out += &format!(
            "  {:<22} {:>7}  {:<9} {:>9.1}   (the cached row's p50: {hop:.1}; the difference is the image's preparation, the cache, copies, and run-to-run noise)\n",
            "all stages", s.threads, "", stages,
        );
    }
    out
}

fn accuracy_line(a: &PrecisionAccuracy) -> String {
    let (what, image) = match (a.precision, a.image_precision) {
        (openl3, "float32") => (openl3.to_string(), String::new()),
        (openl3, image) => (
            match openl3 {
                "float32" => format!("{image} image trunk"),
                _ => format!("{openl3} OpenL3 with a {image} image trunk"),
            },
            format!(
                "; image embeddings of {} frames, cosine mean {:.6}, min {:.6}",
                a.image_frames, a.image_cosine_mean, a.image_cosine_min
            ),
        ),
    };
    format!(
        "{what} against float32 on generated scenes: OpenL3 embeddings of {} frames, cosine mean {:.6}, min {:.6}{image}; \
         the whole model on {} windows: top-1 agrees on {}/{}, class probabilities differ by at most {:.4}\n",
        a.frames,
        a.cosine_mean,
        a.cosine_min,
        a.windows,
        a.top1_agree,
        a.windows,
        a.max_probability_diff
    )
}

fn overload_line(o: &OverloadRecord) -> String {
    format!(
        "overload: {:.1} windows/s offered for {:.0} s (4× capacity): {} classified, {} dropped at the queue, \
         {} dropped as stale; resident memory {:.0} MB at the start, then {} MB after each quarter; \
         {} OpenL3 frames cached at the end\n",
        o.offered_per_s,
        o.seconds,
        o.classified,
        o.dropped_queue,
        o.dropped_stale,
        o.rss_start_mb,
        o.rss_quarters_mb
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(" → "),
        o.cached_audio_frames
    )
}
