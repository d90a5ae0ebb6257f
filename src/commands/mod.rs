//! The subcommands behind `main.rs`'s command line. Each returns the process exit code.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

mod train;

pub use train::{classify, dataset_info, evaluate, record, synth_dataset, train};

use crate::config::Settings;
use crate::model::{DeviceSpec, Model, ModelSpec, PROFILES};

/// Exit code for a configuration that cannot be used (sysexits' EX_CONFIG would be 78;
/// 2 is what the issue tracker and systemd units expect).
pub const EXIT_CONFIG: u8 = 2;

/// `avscene check-config`: load and validate everything, start nothing, print a summary.
pub fn check_config(path: Option<&Path>, show_launch: bool) -> ExitCode {
    let settings = match Settings::load(path) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("avscene: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // What only libtorch can tell: the device exists, the model file is a model.
    let model = &settings.config.model;
    if let Err(reason) = model.device.resolve() {
        eprintln!(
            "avscene: invalid configuration: {}: key `model.device`: {reason}",
            settings.file.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(file) = &model.path {
        if let Err(error) = Model::load(file, tch::Device::Cpu) {
            eprintln!(
                "avscene: invalid configuration: {}: key `model.path`: {error}",
                settings.file.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    emit(&summary(&settings, show_launch));
    ExitCode::SUCCESS
}

/// A human summary of a valid configuration.
pub fn summary(settings: &Settings, show_launch: bool) -> String {
    let c = &settings.config;
    let mut s = String::new();
    let _ = writeln!(s, "configuration {} is valid", settings.file.display());
    let auth = c
        .mqtt
        .username
        .as_deref()
        .map(|u| format!(", user '{u}'"))
        .unwrap_or_default();
    let tls = if c.mqtt.tls.is_some() {
        "mqtts"
    } else {
        "mqtt"
    };
    let _ = writeln!(
        s,
        "  mqtt:      {tls}://{}:{}{auth}, topics {}/<stream>/…, QoS {}, discovery {}",
        c.mqtt.host,
        c.mqtt.port,
        c.mqtt.topic_prefix,
        u8::from(c.mqtt.qos),
        if c.mqtt.discovery {
            c.mqtt.discovery_prefix.as_str()
        } else {
            "off"
        }
    );
    let model = match &c.model.path {
        Some(p) => p.display().to_string(),
        None => format!(
            "none: a freshly initialised '{}' model (labels are meaningless)",
            c.model.profile
        ),
    };
    let _ = writeln!(s, "  model:     {model}, device {}", c.model.device);
    let _ = writeln!(
        s,
        "  inference: batches of up to {} windows, wait ≤ {} ms, queue {}",
        c.inference.max_batch, c.inference.max_wait_ms, c.inference.queue_capacity
    );
    let _ = writeln!(
        s,
        "  window:    {} s every {} s",
        c.window.length_s, c.window.hop_s
    );
    let metrics = if c.metrics.enabled {
        format!("http://{}/metrics", c.metrics.listen)
    } else {
        "off".into()
    };
    let _ = writeln!(s, "  metrics:   {metrics}");
    let disabled = c.streams.iter().filter(|st| !st.enabled).count();
    let _ = writeln!(
        s,
        "  streams:   {} enabled, {disabled} disabled",
        settings.streams.len()
    );
    for stream in &settings.streams {
        let kind = if stream.live { "live" } else { "file" };
        let _ = writeln!(
            s,
            "    - {} ({kind}, {}): {}",
            stream.name,
            stream.pipeline_file.display(),
            stream.description
        );
        if show_launch {
            let _ = writeln!(s, "      gst-launch-1.0 {}", stream.launch);
        }
    }
    s
}

/// Exit code for a failure other than the configuration (a bad model file, say).
pub const EXIT_FAILURE: u8 = 1;

/// Write to standard output; a closed pipe (`| head`) is not an error worth a panic.
fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("avscene: {message}");
    ExitCode::from(EXIT_FAILURE)
}

/// Group digits in threes: 23,520,842.
fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The model a command works on: a file, or a fresh model of a profile.
fn open_model(model: Option<&Path>, profile: &str, device: DeviceSpec) -> Result<Model, String> {
    let device = device.resolve()?;
    match model {
        Some(path) => Model::load(path, device).map_err(|e| e.to_string()),
        None => ModelSpec::profile(profile)
            .map(|spec| Model::fresh(spec, device))
            .ok_or_else(|| {
                format!(
                    "unknown profile '{profile}' (known: {})",
                    PROFILES.join(", ")
                )
            }),
    }
}

/// `avscene model info`: what a model file (or a fresh model) holds.
pub fn model_info(
    model: Option<&Path>,
    profile: &str,
    device: DeviceSpec,
    as_json: bool,
) -> ExitCode {
    let model_path = model;
    let model = match open_model(model_path, profile, device) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let counts = model.parameter_counts();
    let f = &model.features;
    let source = match model_path {
        Some(p) => p.display().to_string(),
        None => format!(
            "none: a freshly initialised '{}' model (random weights)",
            model.spec.profile
        ),
    };
    let device = format!("{:?}", model.vs.device()).to_lowercase();
    if as_json {
        let info = serde_json::json!({
            "file": model_path.map(|p| p.display().to_string()),
            "id": model.id,
            "device": device,
            "spec": model.spec,
            "features": model.features,
            "provenance": model.provenance,
            "parameters": {
                "openl3": counts.openl3,
                "audio_branch": counts.audio_branch,
                "image_branch": counts.image_branch,
                "fusion": counts.fusion,
                "total_without_openl3": counts.total_without_openl3(),
            },
            "inputs": {
                "audio_frames": ["B", f.audio_frames, f.frame_samples],
                "openl3_embeddings": ["B", f.audio_frames, crate::model::OPENL3_EMBEDDING],
                "images": ["B", f.images, 3, f.image_size, f.image_size],
            },
            "output": ["B", model.spec.num_classes()],
        });
        emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&info).unwrap_or_default()
        ));
        return ExitCode::SUCCESS;
    }
    let s = &model.spec;
    let mut text = String::new();
    let _ = writeln!(text, "model:     {source}");
    let _ = writeln!(
        text,
        "id:        {}  (source: {}, avscene {})",
        model.id, model.provenance.source, model.provenance.avscene_version
    );
    let _ = writeln!(
        text,
        "profile:   {}  (dim {}, image backbone {:?} {:?} width {})",
        s.profile, s.dim, s.backbone.block, s.backbone.layers, s.backbone.width
    );
    let _ = writeln!(
        text,
        "classes:   {} — {}",
        s.classes.len(),
        s.classes.join(", ")
    );
    let _ = writeln!(text, "device:    {device}");
    let _ = writeln!(
        text,
        "inputs:    audio (B, {}, {}) mono {} Hz frames → OpenL3 → (B, {}, {})",
        f.audio_frames,
        f.frame_samples,
        f.sample_rate,
        f.audio_frames,
        crate::model::OPENL3_EMBEDDING
    );
    let _ = writeln!(
        text,
        "           images (B, {}, 3, {}, {}) RGB, normalised",
        f.images, f.image_size, f.image_size
    );
    let _ = writeln!(
        text,
        "output:    (B, {}) logits (mean + max over {} frames); softmax gives probabilities",
        s.num_classes(),
        f.images
    );
    let _ = writeln!(text, "trainable parameters:");
    let parts = [
        (
            "OpenL3 network",
            counts.openl3,
            "  (frozen feature extractor)",
        ),
        ("audio branch", counts.audio_branch, ""),
        ("image branch", counts.image_branch, ""),
        ("fusion + classifier", counts.fusion, ""),
        ("total without OpenL3", counts.total_without_openl3(), ""),
    ];
    for (part, count, remark) in parts {
        let _ = writeln!(text, "  {part:<20}  {:>12}{remark}", thousands(count));
    }
    emit(&text);
    ExitCode::SUCCESS
}

/// Inputs of `avscene import-weights`.
pub struct ImportArgs<'a> {
    pub out: &'a Path,
    pub resnet: Option<&'a Path>,
    pub openl3: Option<&'a Path>,
    pub dual_stream: Option<&'a Path>,
    pub profile: &'a str,
    pub classes: Option<Vec<String>>,
    pub force: bool,
}

/// `avscene import-weights`: public PyTorch weights → an avscene model file.
pub fn import_weights(args: ImportArgs<'_>) -> ExitCode {
    use crate::model::import::{Source, import_all};
    let inputs: Vec<(std::path::PathBuf, Source)> = [
        (args.resnet, Source::Resnet),
        (args.openl3, Source::OpenL3),
        (args.dual_stream, Source::DualStream),
    ]
    .into_iter()
    .filter_map(|(path, source)| path.map(|p| (p.to_path_buf(), source)))
    .collect();
    if inputs.is_empty() {
        return fail("import-weights: give at least one of --resnet50, --openl3, --dual-stream");
    }
    if args.out.exists() && !args.force {
        return fail(format!(
            "{} exists; pass --force to replace it",
            args.out.display()
        ));
    }
    let Some(mut spec) = ModelSpec::profile(args.profile) else {
        return fail(format!(
            "unknown profile '{}' (known: {})",
            args.profile,
            PROFILES.join(", ")
        ));
    };
    if let Some(classes) = args.classes {
        spec.classes = classes;
    }
    let problems = spec.problems();
    if !problems.is_empty() {
        return fail(format!("--classes: {}", problems.join("; ")));
    }
    let mut model = Model::fresh(spec, tch::Device::Cpu);
    let report = match import_all(&mut model, &inputs) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Err(e) = model.save(args.out) {
        return fail(e);
    }
    let mut text = String::new();
    for (file, count) in &report.imported {
        let _ = writeln!(text, "imported {count} tensors from {file}");
    }
    for (file, names) in &report.unused {
        let _ = writeln!(
            text,
            "note: {file}: {} left out, unused by the model (an ImageNet classifier): {}",
            names.len(),
            names.join(", ")
        );
    }
    for part in &report.untouched_parts {
        let _ = writeln!(
            text,
            "left as initialised (train it with avscene train): {part}"
        );
    }
    let _ = writeln!(text, "wrote {}", args.out.display());
    emit(&text);
    ExitCode::SUCCESS
}

/// The configured stream named `name`, or the first enabled one.
fn pick_stream(
    settings: &Settings,
    name: Option<&str>,
) -> Result<crate::capture::StreamSpec, String> {
    let spec = match name {
        Some(name) => settings.streams.iter().find(|s| s.name == name),
        None => settings.streams.first(),
    };
    spec.cloned().ok_or_else(|| {
        let names: Vec<&str> = settings.streams.iter().map(|s| s.name.as_str()).collect();
        format!(
            "no enabled stream named '{}' (streams: {})",
            name.unwrap_or(""),
            names.join(", ")
        )
    })
}

/// `avscene capture`: run one stream and report each window; optionally save them.
pub fn capture(
    config: Option<&Path>,
    stream: Option<&str>,
    seconds: Option<f64>,
    save_dir: Option<&Path>,
) -> ExitCode {
    use crate::capture::{StreamState, save_window, spawn, window_queue};
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("avscene: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let spec = match pick_stream(&settings, stream) {
        Ok(spec) => spec,
        Err(e) => return fail(e),
    };
    if let Some(dir) = save_dir {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(format!("{}: {e}", dir.display()));
        }
    }
    let name = spec.name.clone();
    let (tx, rx) = window_queue(settings.config.inference.queue_capacity);
    let handle = spawn(
        spec,
        settings.config.capture.clone(),
        settings.config.window.clone(),
        tx.clone(),
    );
    let started = std::time::Instant::now();
    let cpu_start = crate::support::process::cpu_seconds().unwrap_or(0.0);
    let rss_start = crate::support::process::rss_bytes().unwrap_or(0);
    let deadline =
        seconds.map(|s| std::time::Instant::now() + std::time::Duration::from_secs_f64(s));
    eprintln!(
        "capturing stream '{name}'{}; the first window comes after 10 s",
        seconds.map(|s| format!(" for {s} s")).unwrap_or_default()
    );
    let mut count = 0u64;
    loop {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(w) => {
                count += 1;
                let start = w.start_sample as f64 / crate::features::SAMPLE_RATE as f64;
                let mut line = format!(
                    "window {:>5}  t={start:>8.1}s  samples={} frames={}  filled: {} samples, {} frames  rms={:.4}  dropped={}  rss={:.0} MB",
                    w.seq,
                    w.audio.len(),
                    w.frames.len(),
                    w.filled_samples,
                    w.filled_frames,
                    w.audio_rms(),
                    handle
                        .stats
                        .dropped
                        .load(std::sync::atomic::Ordering::Relaxed),
                    crate::support::process::rss_bytes().unwrap_or(0) as f64 / 1e6,
                );
                if let Some(dir) = save_dir {
                    match save_window(dir, &w) {
                        Ok(path) => line.push_str(&format!("  saved {}", path.display())),
                        Err(e) => line.push_str(&format!("  not saved: {e}")),
                    }
                }
                emit(&format!("{line}\n"));
            }
            Err(_) if handle.is_finished() && rx.is_empty() => break,
            Err(_) => {}
        }
    }
    let stats = handle.stats.clone();
    handle.stop();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let mut summary = format!(
        "stream '{name}': {count} windows, {} dropped, {} restarts, {} faults",
        load(&stats.dropped),
        load(&stats.restarts),
        load(&stats.faults)
    );
    if let Some(e) = stats.last_error() {
        summary.push_str(&format!("; last error: {e}"));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = crate::support::process::cpu_seconds().unwrap_or(0.0) - cpu_start;
    summary.push_str(&format!(
        "\nresources: {cpu:.1} s CPU over {wall:.1} s ({:.1} % of one core); resident memory {:.0} MB at start, {:.0} MB at end",
        100.0 * cpu / wall.max(1e-9),
        rss_start as f64 / 1e6,
        crate::support::process::rss_bytes().unwrap_or(0) as f64 / 1e6
    ));
    if let StreamState::Backoff { reason } = stats.state() {
        summary.push_str(&format!("; failing: {reason}"));
    }
    eprintln!("{summary}");
    if count == 0 {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// Options of `avscene bench`.
pub struct BenchArgs<'a> {
    pub model: Option<&'a Path>,
    pub profile: &'a str,
    pub device: DeviceSpec,
    pub quick: bool,
    pub json: bool,
    pub batches: Option<Vec<usize>>,
    pub threads: Option<Vec<usize>>,
    pub audio_stride: u64,
    pub fast_stft: bool,
    pub overload: bool,
}

/// `avscene bench`: the inference engine on synthetic windows.
pub fn bench(args: BenchArgs<'_>) -> ExitCode {
    use crate::infer::InferenceConfig;
    use crate::infer::bench::{BenchPlan, overload, run};
    if ![1, 2, 5, 10].contains(&args.audio_stride) {
        return fail(format!(
            "--audio-stride must be 1, 2, 5 or 10, not {}",
            args.audio_stride
        ));
    }
    if args.batches.as_ref().is_some_and(|b| b.contains(&0))
        || args.threads.as_ref().is_some_and(|t| t.contains(&0))
    {
        return fail("--batches and --threads take positive numbers");
    }
    let model = match open_model(args.model, args.profile, args.device) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let config = InferenceConfig {
        audio_stride: args.audio_stride,
        fast_stft: args.fast_stft,
        ..Default::default()
    };
    let plan = BenchPlan::new(args.quick, args.batches, args.threads);
    if !args.json {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_default();
        emit(&format!(
            "avscene bench: model {} ({}), device {:?}, {} CPU core(s) {cpu}, audio stride {} × 0.1 s, STFT by {}\n\
             {:<7} {:>5} {:>7} {:>12} {:>10} {:>10} {:>8}\n",
            model.id,
            model.spec.profile,
            model.vs.device(),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            args.audio_stride,
            if args.fast_stft {
                "FFT"
            } else {
                "kernel convolution"
            },
            "path",
            "batch",
            "threads",
            "windows/s",
            "p50 ms",
            "p99 ms",
            "RTF"
        ));
    }
    let json = args.json;
    let (records, model) = run(model, &config, &plan, |r| {
        if json {
            emit(&format!(
                "{}\n",
                serde_json::to_string(r).unwrap_or_default()
            ));
        } else {
            emit(&format!(
                "{:<7} {:>5} {:>7} {:>12.4} {:>10.1} {:>10.1} {:>8.3}\n",
                r.path, r.batch, r.threads, r.windows_per_s, r.p50_ms, r.p99_ms, r.rtf
            ));
        }
    });
    if json {
        return ExitCode::SUCCESS;
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
        emit(&format!(
            "cached / naive at batch 1, 1 s hop: {:.1}×\n",
            cached / naive
        ));
    }
    if args.overload && plan.overload_s > 0.0 {
        let threads = plan.threads.iter().copied().max().unwrap_or(1);
        let o = overload(model, &config, threads, cached.max(0.1), plan.overload_s);
        emit(&format!(
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
        ));
    }
    ExitCode::SUCCESS
}

/// `avscene mqtt-test`: connect with the configured settings, publish to a test topic,
/// receive it back; report success or the exact failure.
pub fn mqtt_test(config: Option<&Path>) -> ExitCode {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("avscene: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mqtt = &settings.config.mqtt;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let timeout = std::time::Duration::from_secs(5);
    match runtime.block_on(crate::publish::connection::round_trip(mqtt, timeout)) {
        Ok(trip) => {
            let user = mqtt
                .username
                .as_deref()
                .map(|u| format!(" as '{u}'"))
                .unwrap_or_default();
            emit(&format!(
                "MQTT OK: connected to {}:{}{user} in {:.0} ms; published and received {} in {:.1} ms\n",
                mqtt.host,
                mqtt.port,
                trip.connect.as_secs_f64() * 1000.0,
                trip.topic,
                trip.round_trip.as_secs_f64() * 1000.0
            ));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("MQTT test failed: {e}")),
    }
}

/// `avscene run`: the live daemon.
pub fn run(config: Option<&Path>, print_labels: bool) -> ExitCode {
    match crate::service::daemon::run(config, print_labels) {
        Ok(()) => ExitCode::SUCCESS,
        Err(crate::service::daemon::DaemonError::Config(error)) => {
            eprintln!("avscene: invalid configuration: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => fail(error),
    }
}
