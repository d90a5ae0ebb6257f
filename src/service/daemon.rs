//! `avscene run`: every configured stream, one shared model and inference worker, the
//! MQTT publisher and the metrics endpoint, until SIGINT/SIGTERM (a clean stop within
//! [`STOP_LIMIT`]: sources stopped, the batch in progress finished or dropped, `stopped`
//! published, exit 0; a second signal quits at once). SIGHUP re-reads the configuration:
//! added streams start, removed ones stop (and leave Home Assistant), changed ones
//! restart; the model stays loaded; an invalid new configuration is logged and the
//! running one kept. Under systemd it reports READY, STATUS, WATCHDOG (only while the
//! main loop and the inference worker make progress) and STOPPING.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::metrics::{HealthPolicy, MetricsServer, ModelInfo, Telemetry};
use super::notify::Notifier;
use crate::capture::{StreamHandle, StreamSpec, StreamStats, WindowSender, spawn, window_queue};
use crate::config::Settings;
use crate::infer::{Engine, SceneResult, Worker, WorkerStats, spawn_worker};
use crate::model::{Model, ModelSpec};
use crate::publish::Publisher;

/// A stop takes at most this long; past it the daemon exits with what is in flight.
pub const STOP_LIMIT: Duration = Duration::from_millis(4500);
/// The inference worker counts as hung when its heartbeat is older than this (or than
/// three times its slowest batch, whichever is longer).
pub const WORKER_HANG: Duration = Duration::from_secs(60);
/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("model: {0}")]
    Model(String),
    #[error("mqtt: {0}")]
    Mqtt(#[from] crate::publish::connection::MqttError),
    #[error("{0}")]
    Start(String),
}

/// The running streams, by name, with the spec each was started from.
struct Streams {
    running: HashMap<String, (StreamSpec, StreamHandle)>,
    settings: Settings,
    windows: WindowSender,
}

impl Streams {
    fn start(&mut self, spec: StreamSpec) {
        tracing::info!(
            "stream '{}': starting ({})",
            spec.name,
            spec.pipeline_file.display()
        );
        let handle = spawn(
            spec.clone(),
            self.settings.config.capture.clone(),
            self.settings.config.window.clone(),
            self.windows.clone(),
        );
        self.running.insert(spec.name.clone(), (spec, handle));
    }

    fn stats(&self) -> Vec<Arc<StreamStats>> {
        self.running
            .values()
            .map(|(_, h)| h.stats.clone())
            .collect()
    }

    /// Apply a new configuration's streams; returns the names of (added, removed) ones.
    fn reload(&mut self, settings: Settings) -> (Vec<String>, Vec<String>) {
        self.settings = settings;
        let wanted: HashMap<String, StreamSpec> = self
            .settings
            .streams
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let before: Vec<String> = self.running.keys().cloned().collect();
        let mut removed = Vec::new();
        for name in &before {
            let restart = match wanted.get(name) {
                Some(spec) if spec.launch == self.running[name].0.launch => continue,
                Some(_) => "changed, restarting",
                None => "removed",
            };
            tracing::info!("stream '{name}': {restart}");
            if let Some((_, handle)) = self.running.remove(name) {
                handle.stop();
            }
            if !wanted.contains_key(name) {
                removed.push(name.clone());
            }
        }
        let mut added = Vec::new();
        for (name, spec) in wanted {
            if !self.running.contains_key(&name) {
                if !before.contains(&name) {
                    added.push(name);
                }
                self.start(spec);
            }
        }
        (added, removed)
    }

    /// Stop every stream, all at once (a source can take a moment to shut).
    fn stop_all(&mut self) {
        std::thread::scope(|scope| {
            for (_, (_, handle)) in self.running.drain() {
                scope.spawn(move || handle.stop());
            }
        });
    }
}

/// Load the model the configuration names (or a fresh one of its profile).
fn load_model(settings: &Settings) -> Result<Model, DaemonError> {
    let model = &settings.config.model;
    let device = model.device.resolve().map_err(DaemonError::Model)?;
    match &model.path {
        Some(path) => Model::load(path, device).map_err(|e| DaemonError::Model(e.to_string())),
        None => {
            let spec = ModelSpec::profile(&model.profile).ok_or_else(|| {
                DaemonError::Model(format!("unknown profile '{}'", model.profile))
            })?;
            tracing::warn!(
                "no model.path: running a freshly initialised '{}' model — its labels are meaningless \
                 until you give it a trained model (see the README)",
                model.profile
            );
            Ok(Model::fresh(spec, device))
        }
    }
}

/// Run until SIGINT or SIGTERM; `print_labels` logs every label (else only changes).
pub fn run(config: Option<&Path>, print_labels: bool) -> Result<(), DaemonError> {
    let notifier = Notifier::from_env();
    let config_path: Option<PathBuf> = config.map(Path::to_path_buf);
    let settings = Settings::load(config)?;
    let model = load_model(&settings)?;
    let device = match model.vs.device() {
        tch::Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    };
    tracing::info!("model {} on {device}", model.id);
    let (model_id, profile) = (model.id.clone(), model.spec.profile.clone());
    let classes = model.spec.classes.clone();
    let stream_names: Vec<String> = settings.streams.iter().map(|s| s.name.clone()).collect();
    let publisher = Arc::new(Publisher::start(
        &settings.config.mqtt,
        &stream_names,
        &classes,
        &model_id,
    )?);

    let inference = &settings.config.inference;
    let (windows, window_rx) = window_queue(inference.queue_capacity);
    let (results_tx, results_rx) = crossbeam_channel::bounded(1024);
    let engine = Engine::new(model, inference);
    let worker = spawn_worker(
        engine,
        inference,
        settings.config.model.threads,
        window_rx,
        results_tx,
    )
    .map_err(|e| DaemonError::Start(format!("cannot start the inference thread: {e}")))?;

    let telemetry = Arc::new(Telemetry::new(
        ModelInfo {
            id: model_id,
            profile,
            device,
        },
        worker.stats.clone(),
        publisher.stats.clone(),
        windows.clone(),
        HealthPolicy {
            stale_after: Duration::from_secs_f64(settings.config.metrics.health_stale_s),
        },
    ));
    let metrics = match settings.config.metrics.listen_addr() {
        Some(address) if settings.config.metrics.enabled => {
            Some(MetricsServer::start(address, telemetry.clone()).map_err(DaemonError::Start)?)
        }
        _ => None,
    };
    let forward = {
        let (publisher, telemetry) = (publisher.clone(), telemetry.clone());
        std::thread::Builder::new()
            .name("results".into())
            .spawn(move || forward_results(&results_rx, &publisher, &telemetry, print_labels))
            .map_err(|e| DaemonError::Start(e.to_string()))?
    };

    let mut streams = Streams {
        running: HashMap::new(),
        settings: settings.clone(),
        windows,
    };
    for spec in settings.streams.clone() {
        streams.start(spec);
    }
    telemetry.set_streams(streams.stats());
    tracing::info!("avscene running: {} stream(s)", streams.running.len());
    let mut status = StatusLine::new(worker.stats.clone());
    notifier.ready(&status.line(&telemetry));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Start(format!("cannot start the async runtime: {e}")))?;
    let signals = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (term, int, hup) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        );
        match (term, int, hup) {
            (Ok(term), Ok(int), Ok(hup)) => Ok((term, int, hup)),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        }
    });
    let (mut term, mut int, mut hup) =
        signals.map_err(|e| DaemonError::Start(format!("cannot install signal handlers: {e}")))?;

    // The main loop: signals, and a tick that keeps systemd's watchdog fed only while
    // this loop and the inference worker make progress.
    let tick = notifier.watchdog().map_or(Duration::from_secs(1), |w| {
        (w / 2).min(Duration::from_secs(1))
    });
    let mut hung_reported = false;
    runtime.block_on(async {
        let mut ticks = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    notifier.reloading();
                    match Settings::load(config_path.as_deref()) {
                        Ok(new) => {
                            tracing::info!("SIGHUP: configuration re-read from {}", new.file.display());
                            let (added, removed) = streams.reload(new);
                            for name in &added {
                                publisher.add_stream(name);
                            }
                            for name in &removed {
                                publisher.remove_stream(name);
                            }
                            telemetry.set_streams(streams.stats());
                        }
                        Err(error) => tracing::error!("SIGHUP: invalid configuration, keeping the running one: {error}"),
                    }
                    notifier.ready(&status.line(&telemetry));
                }
                _ = ticks.tick() => {
                    let alive = worker.stats.is_alive(WORKER_HANG);
                    if alive {
                        notifier.watchdog_ping();
                        hung_reported = false;
                    } else if !hung_reported {
                        hung_reported = true;
                        tracing::error!(
                            "inference: no progress for {:.0} s; the worker looks hung (systemd's watchdog will restart avscene)",
                            worker.stats.since_heartbeat().as_secs_f64()
                        );
                    }
                    if status.due() {
                        notifier.status(&status.line(&telemetry));
                    }
                }
            }
        }
    });

    tracing::info!("stopping");
    notifier.stopping();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let stopper = std::thread::Builder::new()
        .name("stop".into())
        .spawn(move || {
            let clean = stop(streams, worker, &publisher, metrics);
            drop(forward); // it ends with the worker's channel; not waited for
            let _ = done_tx.send(clean);
        });
    if let Err(e) = stopper {
        tracing::error!("cannot start the stop thread ({e}); exiting at once");
        quit_now();
    }
    let clean = runtime.block_on(async {
        tokio::select! {
            clean = done_rx => clean.unwrap_or(false),
            _ = term.recv() => { tracing::warn!("second signal: quitting now"); false }
            _ = int.recv() => { tracing::warn!("second signal: quitting now"); false }
            _ = tokio::time::sleep(STOP_LIMIT) => {
                tracing::warn!(
                    "stopping took longer than {:.1} s: quitting with windows in flight",
                    STOP_LIMIT.as_secs_f64()
                );
                false
            }
        }
    });
    if !clean {
        quit_now();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Exit 0 without running libraries' exit handlers: a thread still inside libtorch or
/// GStreamer would crash on their teardown.
fn quit_now() -> ! {
    use std::io::Write;
    let _ = std::io::stderr().flush();
    let _ = std::io::stdout().flush();
    // SAFETY: _exit ends the process at once; nothing runs after it.
    unsafe { libc::_exit(0) }
}

/// Results to the publisher, counted per stream; label changes (or all labels) are
/// logged at info.
fn forward_results(
    results: &crossbeam_channel::Receiver<SceneResult>,
    publisher: &Publisher,
    telemetry: &Telemetry,
    print_labels: bool,
) {
    let mut last: HashMap<Arc<str>, String> = HashMap::new();
    for result in results.iter() {
        telemetry.record_result(&result.stream);
        let changed = last.get(&result.stream) != Some(&result.label);
        if changed || print_labels {
            tracing::info!(
                "{}: {} ({:.2})",
                result.stream,
                result.label,
                result.confidence
            );
            last.insert(result.stream.clone(), result.label.clone());
        } else {
            tracing::debug!(
                "{}: {} ({:.2})",
                result.stream,
                result.label,
                result.confidence
            );
        }
        publisher.publish(result);
    }
}

/// The stop: sources first, then the batch in progress (finished, or dropped if it
/// takes too long), then `stopped` on MQTT. Returns whether every thread ended.
fn stop(
    mut streams: Streams,
    worker: Worker,
    publisher: &Publisher,
    metrics: Option<MetricsServer>,
) -> bool {
    streams.stop_all();
    let finished = worker.stop_within(Duration::from_millis(1500));
    if !finished {
        tracing::warn!("inference: the batch in progress is dropped");
    }
    publisher.stop();
    if let Some(m) = metrics {
        m.stop();
    }
    finished
}

/// The one-line `STATUS=` summary: streams live, windows/s, MQTT state.
struct StatusLine {
    worker: Arc<WorkerStats>,
    since: Instant,
    classified: u64,
}

impl StatusLine {
    fn new(worker: Arc<WorkerStats>) -> StatusLine {
        let classified = worker.classified.load(Ordering::Relaxed);
        StatusLine {
            worker,
            since: Instant::now(),
            classified,
        }
    }

    fn due(&self) -> bool {
        self.since.elapsed() >= STATUS_EVERY
    }

    fn line(&mut self, telemetry: &Telemetry) -> String {
        let classified = self.worker.classified.load(Ordering::Relaxed);
        let elapsed = self.since.elapsed().as_secs_f64().max(1e-3);
        let rate = (classified - self.classified) as f64 / elapsed;
        (self.since, self.classified) = (Instant::now(), classified);
        let (live, all) = telemetry.live_streams();
        let mqtt = if telemetry.publish.connected.load(Ordering::Relaxed) {
            "connected"
        } else {
            "disconnected"
        };
        format!("{live}/{all} streams live, {rate:.2} windows/s, mqtt {mqtt}")
    }
}
