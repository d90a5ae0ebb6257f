//! The inference engine and worker: the per-frame cache gives the from-scratch result,
//! batching across streams changes nothing, stale windows are dropped and counted, and a
//! device that is not there is a clear error.

mod common;

use std::time::Duration;

use avscene::capture::window_queue;
use avscene::infer::{Engine, InferenceConfig, spawn_worker};
use avscene::model::{DeviceSpec, Model, ModelSpec};
use common::synthetic_windows;

use tch::Device;

/// An engine over a small model with deterministic weights (tests run in parallel, so
/// libtorch's global seed cannot make two models equal).
fn engine(cache: bool, stride: u64) -> Engine {
    let model = Model::fresh(ModelSpec::small(), Device::Cpu);
    common::deterministic_init(&model.vs);
    let config = InferenceConfig {
        cache,
        audio_stride: stride,
        ..Default::default()
    };
    Engine::new(model, &config)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_cache_gives_the_from_scratch_result() {
    let windows = synthetic_windows("a", 14, 1);
    assert_eq!(windows.len(), 5);
    let mut naive = engine(false, 1);
    let mut cached = engine(true, 1);
    for (i, w) in windows.iter().enumerate() {
        let expected = &naive.classify(std::slice::from_ref(w))[0];
        let got = &cached.classify(std::slice::from_ref(w))[0];
        let d = max_diff(&expected.probabilities, &got.probabilities);
        assert!(
            d < 1e-5,
            "window {i}: cached and from-scratch differ by {d:e}"
        );
        assert_eq!(expected.label, got.label);
        let sum: f32 = got.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }
    // The first window encodes 96 OpenL3 frames and 10 images; each later one 10 and 1.
    let c = cached.counts();
    assert_eq!(c.audio_encoded, 96 + 4 * 10);
    assert_eq!(c.image_encoded, 10 + 4);
    // Only what the next window can use stays cached.
    let (audio, images) = cached.cached_entries();
    assert!(
        audio <= 96 && images <= 10,
        "{audio} audio, {images} images cached"
    );
}

#[test]
fn batching_across_streams_does_not_change_results() {
    let a = synthetic_windows("a", 12, 1);
    let b = synthetic_windows("b", 12, 2);
    let mut one_by_one = engine(true, 1);
    let mut batched = engine(true, 1);
    for i in 0..a.len() {
        let single: Vec<_> = [&a[i], &b[i]]
            .iter()
            .map(|w| one_by_one.classify(std::slice::from_ref(*w)).remove(0))
            .collect();
        let together = batched.classify(&[a[i].clone(), b[i].clone()]);
        for (s, t) in single.iter().zip(&together) {
            assert_eq!(s.stream, t.stream);
            let d = max_diff(&s.probabilities, &t.probabilities);
            assert!(
                d < 1e-5,
                "{} window {i}: batched and single differ by {d:e}",
                s.stream
            );
            assert_eq!(t.batch, 2);
        }
    }
    // Two consecutive windows of one stream in the same batch share their frames too.
    let mut fresh = engine(true, 1);
    let results = fresh.classify(&a[..2]);
    assert_eq!(results.len(), 2);
    assert_eq!(fresh.counts().audio_encoded, 96 + 10);
}

#[test]
fn a_coarser_audio_stride_encodes_fewer_frames() {
    let windows = synthetic_windows("a", 13, 3);
    let mut coarse = engine(true, 10);
    for w in &windows {
        let r = coarse.classify(std::slice::from_ref(w));
        assert_eq!(r[0].probabilities.len(), 10);
    }
    // One OpenL3 frame per second: 10 for the first window, then 1 per hop.
    assert_eq!(
        coarse.counts().audio_encoded,
        10 + (windows.len() as u64 - 1)
    );
}

#[test]
fn results_carry_what_consumers_need() {
    let windows = synthetic_windows("porch", 11, 4);
    let mut e = engine(true, 1);
    let r = &e.classify(&windows[..1])[0];
    assert_eq!(&*r.stream, "porch");
    assert_eq!(r.probabilities.len(), 10);
    assert!(ModelSpec::small().classes.contains(&r.label));
    assert_eq!(
        r.confidence,
        r.probabilities.iter().cloned().fold(f32::MIN, f32::max)
    );
    assert!(r.end > r.start);
    assert_eq!(r.model_id, "small-untrained");
    assert!(r.compute > Duration::ZERO);
}

#[test]
fn the_worker_batches_classifies_and_drops_stale_windows() {
    let (tx, rx) = window_queue(64);
    let (results_tx, results) = crossbeam_channel::bounded(64);
    let config = InferenceConfig {
        max_batch: 4,
        max_wait_ms: 20,
        stale_after_s: 0.5,
        ..Default::default()
    };
    let worker = spawn_worker(engine(true, 1), &config, 1, rx, results_tx).unwrap();
    let fresh = synthetic_windows("live", 13, 5);
    for w in fresh.iter().cloned() {
        tx.send(w).unwrap();
    }
    let got: Vec<_> = (0..fresh.len())
        .filter_map(|_| results.recv_timeout(Duration::from_secs(30)).ok())
        .collect();
    assert_eq!(got.len(), fresh.len());
    assert!(got.windows(2).all(|p| p[1].seq == p[0].seq + 1), "in order");

    // Windows that already waited longer than stale_after_s are dropped and counted.
    // (They became complete 2 s ago: older than stale_after_s.)
    let old = synthetic_windows("late", 12, 6);
    for mut w in old.iter().cloned() {
        w.ready_at -= Duration::from_secs(2);
        tx.send(w).unwrap();
    }
    let stats = worker.stats.clone();
    common::wait_until(10.0, || {
        stats.stale.load(std::sync::atomic::Ordering::Relaxed) >= old.len() as u64
    });
    assert_eq!(
        stats.stale.load(std::sync::atomic::Ordering::Relaxed),
        old.len() as u64
    );
    assert!(results.try_recv().is_err(), "no result for a stale window");
    assert_eq!(
        stats.classified.load(std::sync::atomic::Ordering::Relaxed),
        fresh.len() as u64
    );
    assert!(worker.stop().is_some());
}

#[test]
fn the_worker_heartbeat_tells_a_hung_worker_from_an_idle_one() {
    use avscene::infer::WorkerStats;
    // An idle worker beats every 100 ms while it waits for windows.
    let (_tx, rx) = window_queue(4);
    let (results, _results) = crossbeam_channel::bounded(4);
    let config = InferenceConfig::default();
    let worker = spawn_worker(engine(true, 1), &config, 1, rx, results).unwrap();
    let started = std::time::Instant::now();
    // Stats nobody updates are what a worker stuck in a call leaves behind: their
    // heartbeat ages with the clock, while the idle worker's stays fresh.
    let stuck = WorkerStats::default();
    let floor = Duration::from_millis(300);
    assert!(common::wait_until(10.0, || !stuck.is_alive(floor)));
    assert!(started.elapsed() > floor);
    assert!(
        common::wait_until(10.0, || worker.stats.is_alive(floor)),
        "an idle worker's heartbeat stays fresh"
    );
    assert!(stuck.is_alive(Duration::from_secs(60)));
    assert!(worker.stop().is_some());
}

#[test]
fn a_device_that_is_not_there_is_a_clear_error() {
    if tch::Cuda::device_count() > 7 {
        return;
    }
    let error = DeviceSpec::Cuda(7).resolve().unwrap_err();
    assert!(error.contains("cuda:7"), "{error}");
    assert_eq!(DeviceSpec::Cpu.resolve(), Ok(Device::Cpu));
    assert!("tpu".parse::<DeviceSpec>().is_err());
}

/// `avscene bench --quick --profile small --json --batches 1 --threads 1`, plus `extra`.
fn quick_bench_json(extra: &[&str]) -> std::process::Output {
    let args = [
        "bench",
        "--quick",
        "--profile",
        "small",
        "--json",
        "--batches",
        "1",
        "--threads",
        "1",
    ];
    std::process::Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(args.iter().chain(extra))
        .output()
        .unwrap()
}

#[test]
fn bench_prints_one_json_object_per_configuration() {
    use avscene::model::flops;
    let out = quick_bench_json(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["naive", "cached", "stages"]);
    let stages = hop_stages(&lines[2], "float32", "float32");
    // The small profile's figures (src/model/flops.rs), per hop of 10 frames and 1 image.
    let gflop: Vec<f64> = stages[..3]
        .iter()
        .map(|s| s["gflop"].as_f64().unwrap())
        .collect();
    let (spec, features) = (
        ModelSpec::small(),
        avscene::features::FeatureSpec::default(),
    );
    let expected = [
        10.0 * flops::openl3_spectrogram(&features, false),
        10.0 * flops::openl3_convolutions(&spec, &features),
        flops::resnet_image(&spec, features.image_size),
    ];
    for (got, want) in gflop.iter().zip(expected) {
        assert!((got - want / 1e9).abs() < 1e-9, "{stages:?}");
    }
    assert!(stages[3]["gflop"].is_null(), "the head is not counted");
    for l in &lines[..2] {
        for field in [
            "batch",
            "threads",
            "windows_per_s",
            "p50_ms",
            "p99_ms",
            "rtf",
        ] {
            assert!(l[field].is_number(), "{field} missing in {l}");
        }
        assert_eq!(l["batch"], 1);
    }
}

/// The stages of a bench run's `stages` record, checked: the spectrogram, OpenL3's
/// convolutions in `openl3`, the image branch in `image`, the head; each timed, and
/// compared with the CPU's peak in its precision where the CPU has one.
fn hop_stages(record: &serde_json::Value, openl3: &str, image: &str) -> Vec<serde_json::Value> {
    assert_eq!(record["threads"], 1, "{record}");
    let stages = record["stages"].as_array().expect("stages").clone();
    let (names, precisions): (Vec<&str>, Vec<&str>) = stages
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap(),
                s["precision"].as_str().unwrap(),
            )
        })
        .unzip();
    assert_eq!(
        names,
        ["spectrogram", "openl3_convolutions", "image", "head"],
        "{record}"
    );
    assert_eq!(
        precisions,
        ["float32", openl3, image, "float32"],
        "{record}"
    );
    let peak = avscene::support::cpu::CpuPeak::detect();
    for s in &stages[..3] {
        assert!(s["ms"].as_f64().unwrap() > 0.0, "{s}");
        // Against the peak of its own precision, where this CPU has one.
        let precision = s["precision"].as_str().unwrap();
        let has_peak = peak.as_ref().and_then(|p| p.gops(precision, 1)).is_some();
        assert_eq!(s["percent_of_peak"].is_number(), has_peak, "{s}");
    }
    stages
}

/// A successful `bench --quick --json FLAG` run's records, each checked to run OpenL3 in
/// `precision` and `layout` and the image trunk in `image`, and the accuracy object that
/// follows them, checked for its counts.
fn reduced_precision_bench(
    out: &std::process::Output,
    precision: &str,
    layout: &str,
    image: &str,
) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (accuracy, records) = lines.split_last().expect("records and the accuracy");
    let (stages, records) = records.split_last().expect("records and the stages");
    assert_eq!(records.len(), 2, "{lines:?}");
    hop_stages(stages, precision, image);
    for r in records {
        assert_eq!(r["openl3_precision"], precision, "{r}");
        assert_eq!(r["openl3_layout"], layout, "{r}");
        assert_eq!(r["image_precision"], image, "{r}");
    }
    let key = match precision {
        "float32" => format!("image_{image}_accuracy"),
        _ => format!("{precision}_accuracy"),
    };
    let a = accuracy[key].clone();
    assert_eq!(
        (a["frames"].as_u64(), a["windows"].as_u64()),
        (Some(20), Some(4)),
        "{a}"
    );
    assert_eq!(a["image_frames"].as_u64(), Some(20), "{a}");
    a
}

/// `--bf16` runs OpenL3 in bfloat16 and reports its accuracy where the CPU has bf16
/// instructions; elsewhere it fails with the reason, before measuring anything.
#[test]
fn bench_bf16_runs_bfloat16_or_says_why_it_cannot() {
    let out = quick_bench_json(&["--bf16"]);
    if avscene::support::cpu::bf16_instructions().is_none() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{stdout}");
        assert!(
            stderr.contains("--bf16: this CPU has no bfloat16 instructions"),
            "{stderr}"
        );
        assert!(stdout.is_empty(), "nothing measured: {stdout}");
        return;
    }
    let a = reduced_precision_bench(&out, "bfloat16", "blocked", "float32");
    assert!(a["cosine_min"].as_f64().unwrap() > 0.9999, "{a}");
    assert!(
        a["cosine_min"].as_f64().unwrap() < 1.0,
        "not float32 again: {a}"
    );
    assert!(a["engine"].as_str().unwrap().ends_with("_bf16"), "{a}");
}

/// `--image-bf16` runs the ResNet image trunk in bfloat16 (OpenL3 stays float32, or
/// with `--int8` runs in int8 beside it) and reports both encoders' accuracy where the
/// CPU has bf16 instructions; elsewhere it fails with the reason, before measuring.
#[test]
fn bench_image_bf16_runs_the_image_trunk_in_bfloat16_or_says_why_it_cannot() {
    let out = quick_bench_json(&["--image-bf16"]);
    if avscene::support::cpu::bf16_instructions().is_none() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("--image-bf16: this CPU has no bfloat16 instructions"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "nothing measured");
        return;
    }
    let a = reduced_precision_bench(&out, "float32", "blocked", "bfloat16");
    // OpenL3 in float32 against itself: equal but for the cosine's own rounding.
    assert!(a["cosine_min"].as_f64().unwrap() > 0.999999, "{a}");
    let image = a["image_cosine_min"].as_f64().unwrap();
    assert!(image > 0.999 && image < 0.999999, "bfloat16, close: {a}");
    assert!(a["engine"].as_str().unwrap().ends_with("_bf16"), "{a}");
    if avscene::model::int8::engine().is_ok() {
        let out = quick_bench_json(&["--int8", "--image-bf16"]);
        let a = reduced_precision_bench(&out, "int8", "nhwc", "bfloat16");
        assert!(a["cosine_min"].as_f64().unwrap() > 0.99, "{a}");
        let image = a["image_cosine_min"].as_f64().unwrap();
        assert!(image > 0.999 && image < 0.999999, "{a}");
    }
}

#[test]
fn bench_int8_runs_the_int8_path_and_reports_its_accuracy() {
    if let Err(e) = avscene::model::int8::engine() {
        common::cannot_run("int8", &e.to_string());
        return;
    }
    let out = quick_bench_json(&["--int8"]);
    // libtorch's one-time deprecation notice for quantized tensors is not passed on.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("deprecated"), "{stderr}");
    let a = reduced_precision_bench(&out, "int8", "nhwc", "float32");
    assert!(a["cosine_min"].as_f64().unwrap() > 0.99, "{a}");
    assert!(a["top1_agree"].as_u64().unwrap() >= 3, "{a}");
    assert!(!a["engine"].as_str().unwrap().is_empty(), "{a}");
}

/// The warning for a machine that does not keep up names what would still help here,
/// least accuracy lost first: not a precision this CPU cannot run, nor one in use.
#[test]
fn the_keep_up_warning_names_the_settings_this_machine_can_still_use() {
    use avscene::infer::Precision;
    let bf16 = avscene::support::cpu::bf16_instructions().is_some();
    let int8 = avscene::model::int8::engine().is_ok();
    let model = Model::fresh(ModelSpec::small(), Device::Cpu);
    let engine = Engine::new(model, &InferenceConfig::default());
    let settings = engine.faster_settings();
    let first = if bf16 { "\"bfloat16\"" } else { "\"int8\"" };
    assert!(
        settings[0].starts_with("inference.openl3_precision") && settings[0].ends_with(first),
        "{settings:?}"
    );
    assert_eq!(
        settings.iter().any(|s| s.contains("image_precision")),
        bf16,
        "{settings:?}"
    );
    assert!(
        settings.contains(&"inference.fast_stft = true"),
        "{settings:?}"
    );
    assert!(
        settings.last().unwrap().starts_with("model.profile"),
        "{settings:?}"
    );
    if !int8 {
        return;
    }
    // Everything this CPU can reduce already on: only a smaller model is left.
    let config = InferenceConfig {
        openl3_precision: Precision::Int8,
        image_precision: if bf16 {
            Precision::Bfloat16
        } else {
            Precision::Float32
        },
        fast_stft: true,
        audio_stride: 10,
        ..Default::default()
    };
    let engine = Engine::new(engine.into_model(), &config);
    let settings = engine.faster_settings();
    assert_eq!(settings.len(), 1, "{settings:?}");
    assert!(settings[0].starts_with("model.profile"), "{settings:?}");
}
