//! `avscene run`: every configured stream, one shared model and inference worker, the
//! MQTT publisher and the metrics endpoint, until SIGINT/SIGTERM (a clean stop within
//! [`STOP_LIMIT`]: sources stopped, the batch in progress finished or dropped, `stopped`
//! published, exit 0; a second signal quits at once). SIGHUP re-reads the configuration:
//! added streams start, removed ones stop (and leave Home Assistant), changed ones
//! restart; the model stays loaded; an invalid new configuration is logged and the
//! running one kept. Under systemd it reports READY, STATUS, WATCHDOG (only while the
//! main loop and the inference worker make progress) and STOPPING.
//!
//! Each stage's config builds its part; this file only wires the parts together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::notify::Notifier;
use super::status::StatusLine;
use super::streams::Streams;
use crate::capture::{StreamState, window_queue};
use crate::config::Settings;
use crate::infer::{SceneResult, Worker};
use crate::metrics::{HealthPolicy, MetricsServer, ModelInfo, Telemetry};
use crate::publish::Publisher;

/// A stop takes at most this long; past it the daemon exits with what is in flight.
pub const STOP_LIMIT: Duration = Duration::from_millis(4500);
/// The inference worker counts as hung when its heartbeat is older than this (or than
/// three times its slowest batch, whichever is longer).
pub const WORKER_HANG: Duration = Duration::from_secs(60);

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

/// Run until SIGINT or SIGTERM; `print_labels` logs every label (else only changes).
pub fn run(config: Option<&Path>, print_labels: bool) -> Result<(), DaemonError> {
    let mut daemon = Daemon::start(config, print_labels)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Start(format!("cannot start the async runtime: {e}")))?;
    let mut signals = runtime
        .block_on(async { Signals::install() })
        .map_err(|e| DaemonError::Start(format!("cannot install signal handlers: {e}")))?;
    runtime.block_on(daemon.serve(&mut signals));
    tracing::info!("stopping");
    daemon.notifier.stopping();
    if !runtime.block_on(daemon.stop(&mut signals)) {
        quit_now();
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP as async streams.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// The running parts, wired together.
struct Daemon {
    config_path: Option<PathBuf>,
    notifier: Notifier,
    streams: Streams,
    worker: Worker,
    publisher: Arc<Publisher>,
    telemetry: Arc<Telemetry>,
    metrics: Option<MetricsServer>,
    /// Carries results from the worker to the publisher; ends with the worker's channel.
    forward: JoinHandle<()>,
    status: StatusLine,
    hung_reported: bool,
}

impl Daemon {
    /// Build every part from the configuration and start the streams; READY once done.
    fn start(config: Option<&Path>, print_labels: bool) -> Result<Daemon, DaemonError> {
        let notifier = Notifier::from_env();
        let settings = Settings::load(config)?;
        let c = &settings.config;
        let model = c.model.build().map_err(DaemonError::Model)?;
        let info = ModelInfo {
            id: model.id.clone(),
            profile: model.spec.profile.clone(),
            device: match model.vs.device() {
                tch::Device::Cuda(n) => format!("cuda:{n}"),
                other => format!("{other:?}").to_lowercase(),
            },
        };
        tracing::info!("model {} on {}", info.id, info.device);
        let names: Vec<String> = settings.streams.iter().map(|s| s.name.clone()).collect();
        let publisher = Arc::new(c.mqtt.build(&names, &model.spec.classes, &info.id)?);
        let (windows, window_rx) = window_queue(c.inference.queue_capacity);
        let (results_tx, results_rx) = crossbeam_channel::bounded(1024);
        let worker = c
            .inference
            .build(model, c.model.threads, window_rx, results_tx)
            .map_err(|e| DaemonError::Start(format!("cannot start the inference thread: {e}")))?;
        let telemetry = Arc::new(Telemetry::new(
            info,
            worker.stats.clone(),
            publisher.stats.clone(),
            windows.clone(),
            HealthPolicy {
                stale_after: Duration::from_secs_f64(c.metrics.health_stale_s),
            },
        ));
        let metrics = c
            .metrics
            .build(telemetry.clone())
            .map_err(DaemonError::Start)?;
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
        for spec in settings.streams {
            streams.start(spec);
        }
        telemetry.set_streams(streams.stats());
        tracing::info!("avscene running: {} stream(s)", streams.running.len());
        let mut status = StatusLine::new(worker.stats.clone());
        notifier.ready(&status.line(&telemetry));
        Ok(Daemon {
            config_path: config.map(Path::to_path_buf),
            notifier,
            streams,
            worker,
            publisher,
            telemetry,
            metrics,
            forward,
            status,
            hung_reported: false,
        })
    }

    /// The main loop: signals, and a tick that keeps systemd's watchdog fed only while
    /// this loop and the inference worker make progress. Returns on SIGTERM or SIGINT.
    async fn serve(&mut self, signals: &mut Signals) {
        let tick = self
            .notifier
            .watchdog()
            .map_or(Duration::from_secs(1), |w| {
                (w / 2).min(Duration::from_secs(1))
            });
        let mut ticks = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = signals.term.recv() => return,
                _ = signals.int.recv() => return,
                _ = signals.hup.recv() => self.reload(),
                _ = ticks.tick() => self.tick(),
            }
        }
    }

    /// SIGHUP: re-read the configuration and apply its streams; keep the running one
    /// when the new one is invalid.
    fn reload(&mut self) {
        self.notifier.reloading();
        match Settings::load(self.config_path.as_deref()) {
            Ok(new) => {
                tracing::info!("SIGHUP: configuration re-read from {}", new.file.display());
                let (added, removed) = self.streams.reload(new);
                for name in &added {
                    self.publisher.add_stream(name);
                }
                for name in &removed {
                    self.publisher.remove_stream(name);
                }
                self.telemetry.set_streams(self.streams.stats());
            }
            Err(error) => {
                tracing::error!("SIGHUP: invalid configuration, keeping the running one: {error}");
            }
        }
        self.notifier.ready(&self.status.line(&self.telemetry));
    }

    /// The watchdog (fed only while the worker makes progress) and `STATUS=`.
    fn tick(&mut self) {
        let stats = &self.worker.stats;
        if stats.is_alive(WORKER_HANG) {
            self.notifier.watchdog_ping();
            self.hung_reported = false;
        } else if !self.hung_reported {
            self.hung_reported = true;
            tracing::error!(
                "inference: no progress for {:.0} s; the worker looks hung (systemd's watchdog will restart avscene)",
                stats.since_heartbeat().as_secs_f64()
            );
        }
        if self.status.due() {
            self.notifier.status(&self.status.line(&self.telemetry));
        }
        self.say_availability();
    }

    /// Tell the publisher, every tick, which streams' sources deliver: a stream is
    /// available while running, not while failing or ended; one still starting has not
    /// said yet. The publisher publishes only changes.
    fn say_availability(&self) {
        for stats in self.streams.stats() {
            let available = match stats.state() {
                StreamState::Running => true,
                StreamState::Backoff { .. } | StreamState::Ended => false,
                StreamState::Starting => continue,
            };
            self.publisher.set_available(&stats.name, available);
        }
    }

    /// The two-stage stop: the parts stop on a thread of their own while a second signal
    /// or [`STOP_LIMIT`] cuts it short. Returns whether everything ended cleanly.
    async fn stop(self, signals: &mut Signals) -> bool {
        let Daemon {
            mut streams,
            worker,
            publisher,
            metrics,
            forward,
            ..
        } = self;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let stopper = std::thread::Builder::new()
            .name("stop".into())
            .spawn(move || {
                let clean = stop_parts(&mut streams, worker, &publisher, metrics);
                drop(forward); // it ends with the worker's channel; not waited for
                let _ = done_tx.send(clean);
            });
        if let Err(e) = stopper {
            tracing::error!("cannot start the stop thread ({e}); exiting at once");
            return false;
        }
        tokio::select! {
            clean = done_rx => clean.unwrap_or(false),
            _ = signals.term.recv() => { tracing::warn!("second signal: quitting now"); false }
            _ = signals.int.recv() => { tracing::warn!("second signal: quitting now"); false }
            _ = tokio::time::sleep(STOP_LIMIT) => {
                tracing::warn!(
                    "stopping took longer than {:.1} s: quitting with windows in flight",
                    STOP_LIMIT.as_secs_f64()
                );
                false
            }
        }
    }
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
        let line = format!(
            "{}: {} ({:.2})",
            result.stream, result.label, result.confidence
        );
        if changed || print_labels {
            tracing::info!("{line}");
            last.insert(result.stream.clone(), result.label.clone());
        } else {
            tracing::debug!("{line}");
        }
        publisher.publish(result);
    }
}

/// Sources first, then the batch in progress (finished, or dropped if it takes too
/// long), then `stopped` on MQTT. Returns whether every thread ended.
fn stop_parts(
    streams: &mut Streams,
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
