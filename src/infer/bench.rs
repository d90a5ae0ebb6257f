//! `avscene bench`: the engine on synthetic windows (no capture, no broker): windows/s,
//! per-window latency and real-time factor for the naive path (every window from
//! scratch) and the cached path, over batch sizes and thread counts; then an overload
//! run that feeds the worker faster than it computes and shows that memory stays flat
//! and drops are counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use tch::Tensor;

use super::{
    Engine, InferenceConfig, Precision, image_precision_in_use, precision_in_use,
    set_image_precision, set_precision, spawn_worker,
};
use crate::capture::window_queue;
use crate::features::IMAGE_BYTES;
use crate::model::{Model, OPENL3_EMBEDDING, flops};
use crate::support::process;
use crate::window::{Assembler, Window, WindowConfig};

/// What to measure.
pub struct BenchPlan {
    pub naive_batches: Vec<usize>,
    pub cached_batches: Vec<usize>,
    pub threads: Vec<usize>,
    /// Timed batches per configuration (after one untimed warm-up for the cached path).
    pub naive_iterations: usize,
    pub cached_iterations: usize,
    /// Seconds of the overload run (0: skip).
    pub overload_s: f64,
}

impl BenchPlan {
    pub fn new(quick: bool, batches: Option<Vec<usize>>, threads: Option<Vec<usize>>) -> BenchPlan {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mut default_threads = vec![1, cores];
        default_threads.dedup();
        let threads = threads.unwrap_or(if quick { vec![cores] } else { default_threads });
        let (naive_batches, cached_batches) = match batches {
            Some(b) => (b.clone(), b),
            None if quick => (vec![1], vec![1, 4]),
            // From scratch a full-size window costs ~2 TFLOP: batch 16 would take many
            // minutes on a small CPU and adds nothing the per-window figure does not show.
            None => (vec![1, 4], vec![1, 4, 16]),
        };
        BenchPlan {
            naive_batches,
            cached_batches,
            threads,
            naive_iterations: 1,
            cached_iterations: if quick { 3 } else { 10 },
            overload_s: if quick { 5.0 } else { 60.0 },
        }
    }
}

/// One measured configuration (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct BenchRecord {
    pub path: &'static str,
    pub batch: usize,
    pub threads: usize,
    pub windows_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Stream-seconds processed per second at a 1 s hop.
    pub rtf: f64,
    pub profile: String,
    pub device: String,
    pub audio_stride: u64,
    /// OpenL3's convolution layout on the CPU: `blocked` (oneDNN), `nchw`, or `nhwc`
    /// (int8's channels-last).
    pub openl3_layout: &'static str,
    /// The ResNet trunk's, the same way.
    pub image_layout: &'static str,
    /// OpenL3's arithmetic: `float32`, `int8` or `bfloat16` (`inference.openl3_precision`).
    pub openl3_precision: &'static str,
    /// The image trunk's: `float32` or `bfloat16` (`inference.image_precision`).
    pub image_precision: &'static str,
    /// The encoders' arithmetic per second (src/model/flops.rs): per window, the OpenL3
    /// frames and images this path encodes (cached: the hop's new ones; naive: all).
    pub gflop_per_s: f64,
    /// This CPU's float32 peak for `threads` (src/support/cpu), where it can tell.
    pub peak_gflop_per_s: Option<f64>,
}

impl BenchRecord {
    /// `gflop_per_s` as a share of the peak, in per cent: float32 only (int8 and
    /// bfloat16 have their own peaks, which this does not model).
    pub fn percent_of_peak(&self) -> Option<f64> {
        self.peak_gflop_per_s
            .filter(|&p| p > 0.0 && self.device == "cpu")
            .filter(|_| self.openl3_precision == "float32" && self.image_precision == "float32")
            .map(|p| 100.0 * self.gflop_per_s / p)
    }
}

/// The overload run's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct OverloadRecord {
    pub path: &'static str,
    pub seconds: f64,
    pub offered_per_s: f64,
    pub classified: u64,
    pub dropped_queue: u64,
    pub dropped_stale: u64,
    pub rss_start_mb: f64,
    pub rss_end_mb: f64,
    /// Resident memory after each quarter of the run.
    pub rss_quarters_mb: Vec<f64>,
    pub cached_audio_frames: usize,
}

/// Consecutive synthetic windows (1 s hop) of one stream: noise and a tone, a new image
/// every second.
pub fn synthetic_stream(name: &str, windows: usize, seed: u64) -> Vec<Window> {
    let mut assembler = Assembler::new(name, &WindowConfig::default());
    let mut out = Vec::new();
    let mut state = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let seconds = windows as u64 + 10;
    for tenth in 0..seconds * 10 {
        let pts = tenth * 100_000_000;
        if tenth % 10 == 0 {
            let shade = ((tenth / 10 + seed) * 29 % 256) as u8;
            out.extend(assembler.push_frame(pts, Arc::from(vec![shade; IMAGE_BYTES])));
        }
        let samples: Vec<f32> = (0..4800u64)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let t = (tenth * 4800 + i) as f32 / 48_000.0;
                0.2 * (t * 2_764.6).sin() + ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            })
            .collect();
        out.extend(assembler.push_audio(pts, &samples));
    }
    out.truncate(windows);
    out
}

/// Consecutive windows (1 s hop) of one generated scene, different for each seed: its
/// sound changes every 2 s between a chord, coloured noise and clicks at levels set by
/// the seed, and its picture is a moving gradient. Nothing in it is shared with
/// [`crate::model::int8::calibration_audio`], so int8 is measured on audio it was not
/// calibrated on.
pub fn scene_stream(name: &str, windows: usize, seed: u64) -> Vec<Window> {
    let mut assembler = Assembler::new(name, &WindowConfig::default());
    let mut out = Vec::new();
    let mut rng = crate::support::SplitMix(seed);
    let mut noise = move || rng.range(-1.0, 1.0) as f32;
    let root = 140.0 + 97.0 * (seed % 7) as f32;
    let level = 0.5 / (1 + seed % 4) as f32;
    let mut smooth = 0.0f32;
    for tenth in 0..(windows as u64 + 10) * 10 {
        let pts = tenth * 100_000_000;
        if tenth % 10 == 0 {
            let second = tenth / 10;
            let image: Vec<u8> = (0..IMAGE_BYTES)
                .map(|i| {
                    let (pixel, channel) = (i / 3, i % 3);
                    let (y, x) = (pixel / 224, pixel % 224);
                    ((x as u64 * (seed + 1) + y as u64 * (channel as u64 + 2) + second * 13) % 256)
                        as u8
                })
                .collect();
            out.extend(assembler.push_frame(pts, Arc::from(image)));
        }
        let part = (tenth / 20 + seed) % 3;
        let samples: Vec<f32> = (0..4800u64)
            .map(|i| {
                let t = (tenth * 4800 + i) as f32 / 48_000.0;
                let n = noise();
                smooth = 0.97 * smooth + 0.03 * n;
                level
                    * match part {
                        0 => [1.0, 1.25, 1.5]
                            .iter()
                            .map(|r| (std::f32::consts::TAU * root * r * t).sin() / 3.0)
                            .sum::<f32>(),
                        1 => 4.0 * smooth + 0.05 * n,
                        _ if i % 1200 < 30 => n,
                        _ => 0.02 * n,
                    }
            })
            .collect();
        out.extend(assembler.push_audio(pts, &samples));
    }
    out.truncate(windows);
    out
}

/// A reduced-precision path against float32 on the same generated scenes
/// ([`precision_accuracy`]).
#[derive(Debug, Clone, Serialize)]
pub struct PrecisionAccuracy {
    /// OpenL3's: `int8`, `bfloat16` or `float32` (where only the image trunk is reduced).
    pub precision: &'static str,
    /// The image trunk's: `bfloat16` or `float32`.
    pub image_precision: &'static str,
    /// What runs it: libtorch's quantized engine for int8 (`X86`, `ONEDNN`, …), the CPU's
    /// instructions for bfloat16 (`avx512_bf16`, `amx_bf16`).
    pub engine: String,
    /// OpenL3 embeddings compared, and their cosine similarity to float32's.
    pub frames: usize,
    pub cosine_mean: f64,
    pub cosine_min: f64,
    /// The image branch's embeddings of the same scenes' first ten frames, the same way.
    pub image_frames: usize,
    pub image_cosine_mean: f64,
    pub image_cosine_min: f64,
    /// Windows the whole model classified both ways, and on how many the top label agrees.
    pub windows: usize,
    pub top1_agree: usize,
    /// The largest difference of any class probability between the two.
    pub max_probability_diff: f64,
}

/// Run `streams` generated scenes of `windows` windows each through the model in float32
/// and in `config`'s reduced precisions (OpenL3's `openl3_precision`, the image trunk's
/// `image_precision`): the encoders' embeddings of each scene's first ten seconds (one
/// OpenL3 frame and one image per second), and the whole model's labels per window.
/// Leaves the model in float32.
pub fn precision_accuracy(
    model: Model,
    config: &InferenceConfig,
    streams: usize,
    windows: usize,
) -> (Result<PrecisionAccuracy, String>, Model) {
    let scenes: Vec<Vec<Window>> = (0..streams)
        .map(|s| scene_stream(&format!("scene{s}"), windows, s as u64))
        .collect();
    let samples = crate::features::AUDIO_FRAME_SAMPLES;
    let device = model.vs.device();
    let firsts = || scenes.iter().filter_map(|scene| scene.first());
    let frames: Vec<f32> = firsts()
        .flat_map(|w| w.audio.chunks_exact(samples).flatten().copied())
        .collect();
    let frames = Tensor::from_slice(&frames)
        .view([-1, samples as i64])
        .to_device(device);
    let images = crate::features::image::stack_frames(
        firsts().flat_map(|w| w.frames.iter().map(|f| &f[..])),
    );
    let images = crate::features::image::images(&images, device);
    // Fail here, with the reason, rather than compare float32 with itself.
    let (openl3, image) = (config.openl3_precision, config.image_precision);
    let net = &model.net;
    let ready = match (openl3, image) {
        (Precision::Float32, Precision::Float32) => {
            Err("float32 against itself: choose int8 or bfloat16".into())
        }
        _ => {
            set_precision(&net.openl3, openl3).and_then(|()| set_image_precision(&net.video, image))
        }
    };
    if let Err(why) = ready {
        return (Err(why), model);
    }
    let mut probabilities = Vec::new();
    let mut embeddings = Vec::new();
    let mut model = model;
    for (openl3_precision, image_precision) in
        [(Precision::Float32, Precision::Float32), (openl3, image)]
    {
        let config = InferenceConfig {
            cache: true,
            openl3_precision,
            image_precision,
            ..config.clone()
        };
        let mut engine = Engine::new(model, &config);
        let net = &engine.model().net;
        embeddings.push(tch::no_grad(|| {
            (
                net.embed_audio_frames(&frames),
                net.embed_images(&images, false),
            )
        }));
        let mut probs = Vec::new();
        for i in 0..windows {
            let batch: Vec<Window> = scenes.iter().map(|s| s[i].clone()).collect();
            probs.extend(engine.classify(&batch).into_iter().map(|r| r.probabilities));
        }
        probabilities.push(probs);
        model = engine.into_model();
    }
    let _ = set_precision(&model.net.openl3, Precision::Float32);
    let _ = set_image_precision(&model.net.video, Precision::Float32);
    // (rows compared, mean and least cosine similarity) of two encoders' outputs.
    let cosine = |a: &Tensor, b: &Tensor| {
        let cosine = Tensor::cosine_similarity(a, b, 1, 1e-8);
        (
            cosine.size()[0] as usize,
            cosine.mean(tch::Kind::Double).double_value(&[]),
            cosine.min().double_value(&[]),
        )
    };
    let [(audio, image_embeddings), (reduced_audio, reduced_images)] = &embeddings[..] else {
        unreachable!("one pass in float32, one reduced")
    };
    let (frames, cosine_mean, cosine_min) = cosine(audio, reduced_audio);
    let (image_frames, image_cosine_mean, image_cosine_min) =
        cosine(image_embeddings, reduced_images);
    let top = crate::support::argmax;
    let (float, reduced) = (&probabilities[0], &probabilities[1]);
    let accuracy = PrecisionAccuracy {
        precision: openl3.name(),
        image_precision: image.name(),
        engine: match openl3 {
            Precision::Float32 => image.engine(),
            reduced => reduced.engine(),
        },
        frames,
        cosine_mean,
        cosine_min,
        image_frames,
        image_cosine_mean,
        image_cosine_min,
        windows: float.len(),
        top1_agree: float
            .iter()
            .zip(reduced)
            .filter(|(a, b)| top(a) == top(b))
            .count(),
        max_probability_diff: float
            .iter()
            .zip(reduced)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64))
            .fold(0.0, f64::max),
    };
    (Ok(accuracy), model)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Measure one configuration. The engine is rebuilt per configuration so caches start
/// empty; returns the engine to reuse its model.
fn measure(
    model: Model,
    config: &InferenceConfig,
    batch: usize,
    threads: usize,
    iterations: usize,
) -> (BenchRecord, Model) {
    tch::set_num_threads(threads as i32);
    let cached = config.cache;
    let profile = model.spec.profile.clone();
    let device = format!("{:?}", model.vs.device()).to_lowercase();
    // What one window makes the encoders compute on this path, at a 1 s hop.
    let features = crate::features::FeatureSpec::default();
    let stride = config.audio_stride.max(1) as i64;
    let (frames, images) = if cached {
        (10 / stride, 1)
    } else {
        (
            (features.audio_frames + stride - 1) / stride,
            features.images,
        )
    };
    let layout = |blocked: bool| {
        if blocked && device == "cpu" {
            "blocked"
        } else {
            "nchw"
        }
    };
    let openl3_layout = layout(model.net.openl3.uses_blocked());
    let image_layout = layout(model.net.video.uses_blocked());
    let mut engine = Engine::new(model, config);
    let fft = engine.model().net.openl3.uses_fft();
    let work = crate::model::flops::window(&engine.model().spec, &features, frames, fft, images);
    let precision = precision_in_use(&engine.model().net.openl3);
    let openl3_layout = match precision {
        Precision::Int8 => "nhwc",
        _ => openl3_layout,
    };
    let openl3_precision = precision.name();
    let image_precision = image_precision_in_use(&engine.model().net.video).name();
    let warmup = usize::from(cached);
    let streams: Vec<Vec<Window>> = (0..batch)
        .map(|s| synthetic_stream(&format!("bench{s}"), warmup + iterations, s as u64))
        .collect();
    if cached {
        let first: Vec<Window> = streams.iter().map(|s| s[0].clone()).collect();
        engine.classify(&first);
    }
    let mut times = Vec::with_capacity(iterations);
    for it in warmup..warmup + iterations {
        let windows: Vec<Window> = streams.iter().map(|s| s[it].clone()).collect();
        let started = Instant::now();
        engine.classify(&windows);
        times.push(started.elapsed().as_secs_f64());
    }
    let total: f64 = times.iter().sum();
    let windows_per_s = (batch * iterations) as f64 / total.max(1e-9);
    times.sort_by(|a, b| a.total_cmp(b));
    let record = BenchRecord {
        path: if cached { "cached" } else { "naive" },
        batch,
        threads,
        windows_per_s,
        p50_ms: percentile(&times, 0.5) * 1000.0,
        p99_ms: percentile(&times, 0.99) * 1000.0,
        rtf: windows_per_s,
        profile,
        device,
        audio_stride: config.audio_stride,
        openl3_layout,
        image_layout,
        openl3_precision,
        image_precision,
        gflop_per_s: work * windows_per_s / 1e9,
        peak_gflop_per_s: crate::support::cpu::CpuPeak::detect().map(|p| p.gflops(threads)),
    };
    (record, engine.into_model())
}

/// Run the plan; `report` receives each record as it is measured.
pub fn run(
    mut model: Model,
    config: &InferenceConfig,
    plan: &BenchPlan,
    mut report: impl FnMut(&BenchRecord),
) -> (Vec<BenchRecord>, Model) {
    let mut records = Vec::new();
    for &threads in &plan.threads {
        for (cache, batches, iterations) in [
            (false, &plan.naive_batches, plan.naive_iterations),
            (true, &plan.cached_batches, plan.cached_iterations),
        ] {
            for &batch in batches {
                let config = InferenceConfig {
                    cache,
                    ..config.clone()
                };
                let (record, back) = measure(model, &config, batch, threads, iterations);
                model = back;
                report(&record);
                records.push(record);
            }
        }
    }
    (records, model)
}

/// One stage of a cached hop, timed alone.
#[derive(Debug, Clone, Serialize)]
pub struct HopStage {
    pub stage: &'static str,
    /// Its arithmetic: `float32`, `int8` or `bfloat16`.
    pub precision: &'static str,
    /// Median milliseconds per hop.
    pub ms: f64,
    /// What it computes per hop (src/model/flops.rs); `None` for the head, not counted.
    pub gflop: Option<f64>,
    pub gflop_per_s: Option<f64>,
    /// Of the CPU's timed peak in this precision for these threads, where it has
    /// instructions for it (src/support/cpu): on the CPU only.
    pub percent_of_peak: Option<f64>,
}

/// A cached hop of one stream taken apart: its stages, each timed alone (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct HopStages {
    pub path: &'static str,
    pub threads: usize,
    pub iterations: usize,
    pub stages: Vec<HopStage>,
}

/// Time the stages of one stream's cached hop on the model as `config` sets it up (its
/// precisions, layouts, STFT): the log-mel spectrograms and OpenL3's convolution stack of
/// the hop's new frames (10 / `audio_stride`, in the chunks the engine runs), the image
/// branch on its one new image, and the head over a window; each the median of
/// `iterations` after a warm-up. Shows where a hop's time goes and how near each
/// encoder comes to the CPU's peak — the cached row's figure is all of them together,
/// with the image's preparation and the cache's bookkeeping beside.
pub fn hop_stages(
    model: Model,
    config: &InferenceConfig,
    threads: usize,
    iterations: usize,
) -> (HopStages, Model) {
    tch::set_num_threads(threads as i32);
    let engine = Engine::new(model, config);
    let model = engine.model();
    let (net, features, spec) = (&model.net, &model.features, &model.spec);
    let device = model.vs.device();
    let options = (tch::Kind::Float, device);
    let frames = 10 / config.audio_stride.max(1) as i64;
    let side = features.image_size;
    let (audio, image, audio_embeddings, image_embeddings) = (
        Tensor::randn([frames, features.frame_samples], options) * 0.1,
        Tensor::randn([1, 3, side, side], options),
        Tensor::randn([1, features.audio_frames, OPENL3_EMBEDDING], options),
        Tensor::randn([1, features.images, spec.dim], options),
    );
    let chunks = crate::model::audio_chunks(&audio);
    let spectrograms_of =
        || -> Vec<Tensor> { chunks.iter().map(|c| net.openl3.stack_input(c)).collect() };
    let spectrograms = tch::no_grad(spectrograms_of);
    let median_ms = |run: &dyn Fn() -> Vec<Tensor>| {
        let timed = || {
            let started = Instant::now();
            let outputs = tch::no_grad(run);
            if let tch::Device::Cuda(index) = device {
                tch::Cuda::synchronize(index as i64);
            }
            drop(outputs);
            started.elapsed().as_secs_f64() * 1000.0
        };
        timed();
        let mut times: Vec<f64> = (0..iterations.max(1)).map(|_| timed()).collect();
        times.sort_by(f64::total_cmp);
        percentile(&times, 0.5)
    };
    let peak = (device == tch::Device::Cpu)
        .then(crate::support::cpu::CpuPeak::detect)
        .flatten();
    let stage = |stage, precision: Precision, ms: f64, gflop: Option<f64>| {
        let gflop_per_s = gflop.map(|g| g / (ms / 1000.0).max(1e-9));
        HopStage {
            stage,
            precision: precision.name(),
            ms,
            gflop,
            gflop_per_s,
            percent_of_peak: gflop_per_s
                .zip(
                    peak.as_ref()
                        .and_then(|p| p.gops(precision.name(), threads)),
                )
                .map(|(rate, peak)| 100.0 * rate / peak),
        }
    };
    let openl3 = |work: f64| Some(frames as f64 * work / 1e9);
    let fft = net.openl3.uses_fft();
    let stages = vec![
        stage(
            "spectrogram",
            Precision::Float32,
            median_ms(&spectrograms_of),
            openl3(flops::openl3_spectrogram(features, fft)),
        ),
        stage(
            "openl3_convolutions",
            precision_in_use(&net.openl3),
            median_ms(&|| {
                spectrograms
                    .iter()
                    .map(|x| net.openl3.embed_stack_input(x))
                    .collect()
            }),
            openl3(flops::openl3_convolutions(spec, features)),
        ),
        stage(
            "image",
            image_precision_in_use(&net.video),
            median_ms(&|| vec![net.embed_images(&image, false)]),
            Some(flops::resnet_image(spec, side) / 1e9),
        ),
        stage(
            "head",
            Precision::Float32,
            median_ms(&|| vec![net.head_t(&audio_embeddings, &image_embeddings, false)]),
            None,
        ),
    ];
    let stages = HopStages {
        path: "stages",
        threads,
        iterations,
        stages,
    };
    (stages, engine.into_model())
}

/// Feed the worker `factor` × faster than `rate` windows/s for `seconds`.
pub fn overload(
    model: Model,
    config: &InferenceConfig,
    threads: usize,
    rate: f64,
    seconds: f64,
) -> OverloadRecord {
    let config = InferenceConfig {
        queue_capacity: 8,
        stale_after_s: 5.0,
        ..config.clone()
    };
    let (tx, rx) = window_queue(config.queue_capacity);
    let (results_tx, results) = crossbeam_channel::bounded(1024);
    let rss_start = process::rss_bytes().unwrap_or(0);
    let engine = Engine::new(model, &config);
    let Ok(worker) = spawn_worker(engine, &config, threads, rx, results_tx) else {
        return OverloadRecord {
            path: "cached",
            seconds: 0.0,
            offered_per_s: 0.0,
            classified: 0,
            dropped_queue: 0,
            dropped_stale: 0,
            rss_start_mb: 0.0,
            rss_end_mb: 0.0,
            rss_quarters_mb: Vec::new(),
            cached_audio_frames: 0,
        };
    };
    let offered = (rate * 4.0).max(1.0);
    let windows = synthetic_stream("overload", 64, 99);
    let done = Arc::new(AtomicBool::new(false));
    let drain = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let _ = results.recv_timeout(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    let mut sent = 0usize;
    let mut quarters = Vec::new();
    while started.elapsed().as_secs_f64() < seconds {
        if started.elapsed().as_secs_f64() >= seconds * (quarters.len() + 1) as f64 / 4.0 {
            quarters.push(process::rss_bytes().unwrap_or(0) as f64 / 1e6);
        }
        // Restamp so the worker sees fresh windows; cycling restarts the stream's timeline.
        let mut w = windows[sent % windows.len()].clone();
        w.ready_at = Instant::now();
        let _ = tx.send(w);
        sent += 1;
        std::thread::sleep(Duration::from_secs_f64(1.0 / offered));
    }
    let dropped_queue = tx.dropped();
    let stats = worker.stats.clone();
    let engine = worker.stop();
    done.store(true, Ordering::Relaxed);
    let _ = drain.join();
    OverloadRecord {
        path: "cached",
        seconds,
        offered_per_s: offered,
        classified: stats.classified.load(Ordering::Relaxed),
        dropped_queue,
        dropped_stale: stats.stale.load(Ordering::Relaxed),
        rss_start_mb: rss_start as f64 / 1e6,
        rss_end_mb: process::rss_bytes().unwrap_or(0) as f64 / 1e6,
        rss_quarters_mb: quarters,
        cached_audio_frames: engine.map(|e| e.cached_entries().0).unwrap_or(0),
    }
}
