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
use crate::metrics::{HealthPolicy, ModelInfo, Telemetry, read_token};
use crate::publish::Publisher;
use crate::record::{Recorder, RecordingState};
use crate::web::{Access, Board, Sources, WebServer};

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
    board: Arc<Board>,
    recorder: Arc<Recorder>,
    /// Each stream's recording state as last published on MQTT.
    record_said: HashMap<String, String>,
    web: Option<WebServer>,
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
        settings.log_warnings();
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
        let model_classes = model.spec.classes.clone();
        let (windows, window_rx) = window_queue(c.inference.queue_capacity);
        let (results_tx, results_rx) = crossbeam_channel::bounded(1024);
        let worker = c
            .inference
            .build(model, c.model.threads, window_rx, results_tx)
            .map_err(|e| DaemonError::Start(format!("cannot start the inference thread: {e}")))?;
        let telemetry = Arc::new(Telemetry::new(
            info.clone(),
            worker.stats.clone(),
            publisher.stats.clone(),
            windows.clone(),
            HealthPolicy {
                stale_after: Duration::from_secs_f64(c.metrics.health_stale_s),
            },
        ));
        let recorder =
            Arc::new(Recorder::start(c.record.dataset_dir()).map_err(|e| {
                DaemonError::Start(format!("cannot start the recorder thread: {e}"))
            })?);
        let tapped = recorder.clone();
        windows.set_tap(Arc::new(move |window| tapped.tap(window)));
        let sources = Sources {
            model: info,
            classes: model_classes,
            worker: worker.stats.clone(),
            publish: publisher.stats.clone(),
            queue: windows.clone(),
            recorder: recorder.clone(),
        };
        let (board, web) = start_web(&settings, sources, &telemetry)?;
        let forward = {
            let (publisher, telemetry, board) =
                (publisher.clone(), telemetry.clone(), board.clone());
            std::thread::Builder::new()
                .name("results".into())
                .spawn(move || {
                    forward_results(&results_rx, &publisher, &telemetry, &board, print_labels)
                })
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
        board.set_streams(streams.stats());
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
            board,
            recorder,
            record_said: HashMap::new(),
            web,
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
                new.log_warnings();
                let (added, removed) = self.streams.reload(new);
                for name in &added {
                    self.publisher.add_stream(name);
                }
                for name in &removed {
                    self.publisher.remove_stream(name);
                    self.recorder.forget(name);
                    self.record_said.remove(name);
                }
                self.telemetry.set_streams(self.streams.stats());
                self.board.set_streams(self.streams.stats());
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
        self.serve_record_requests();
        self.say_recordings();
    }

    /// Requests to record that came over MQTT; one that cannot be is answered on the
    /// stream's `record/state`.
    fn serve_record_requests(&mut self) {
        let requests: Vec<_> = self.publisher.record_requests.try_iter().collect();
        for request in requests {
            if let Err(e) = self.recorder.request(&request, &self.board.stream_names()) {
                tracing::warn!("record '{}' (over MQTT): {e}", request.stream);
                let refused = RecordingState::refused(&request.stream, e.to_string());
                let payload = serde_json::to_string(&refused).unwrap_or_default();
                self.publisher.record_state(&request.stream, payload);
                // The stream's own state is said again after the refusal.
                self.record_said.remove(&request.stream);
            }
        }
    }

    fn say_recordings(&mut self) {
        say_recordings(&self.recorder, &self.publisher, &mut self.record_said);
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
            recorder,
            mut record_said,
            web,
            forward,
            ..
        } = self;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let stopper = std::thread::Builder::new()
            .name("stop".into())
            .spawn(move || {
                let clean = stop_parts(&mut streams, worker, &recorder, web);
                // What the recordings came to, before the goodbye.
                say_recordings(&recorder, &publisher, &mut record_said);
                publisher.stop();
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

/// Publish each stream's recording state when it changed since `said`.
fn say_recordings(recorder: &Recorder, publisher: &Publisher, said: &mut HashMap<String, String>) {
    for state in recorder.states() {
        let payload = serde_json::to_string(&state).unwrap_or_default();
        if said.get(&state.stream) != Some(&payload) {
            publisher.record_state(&state.stream, payload.clone());
            said.insert(state.stream.clone(), payload);
        }
    }
}

/// The status page and the HTTP listener, when `[metrics]` is enabled (the page's state
/// is kept either way: the API's types are the daemon's view of itself).
fn start_web(
    settings: &Settings,
    sources: Sources,
    telemetry: &Arc<Telemetry>,
) -> Result<(Arc<Board>, Option<WebServer>), DaemonError> {
    let c = &settings.config.metrics;
    let token = match &c.token_file {
        Some(file) => Some(
            read_token(file).map_err(|e| DaemonError::Start(format!("metrics.token_file: {e}")))?,
        ),
        None => None,
    };
    let board = Arc::new(Board::new(sources, token.is_some()));
    let web = match c.listen_addr() {
        Some(address) if c.enabled => Some(
            WebServer::start(
                address,
                telemetry.clone(),
                board.clone(),
                Access::new(address, token),
            )
            .map_err(DaemonError::Start)?,
        ),
        _ => None,
    };
    Ok((board, web))
}

/// Results to the publisher and the status page, counted per stream; label changes (or
/// all labels) are logged at info.
fn forward_results(
    results: &crossbeam_channel::Receiver<SceneResult>,
    publisher: &Publisher,
    telemetry: &Telemetry,
    board: &Board,
    print_labels: bool,
) {
    let mut last: HashMap<Arc<str>, String> = HashMap::new();
    for result in results.iter() {
        telemetry.record_result(&result.stream);
        board.record(&result);
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

/// Sources first, then the recordings (the clips taken are written), the batch in
/// progress (finished, or dropped if it takes too long) and the listener; `stopped` on
/// MQTT is the caller's. Returns whether the worker ended.
fn stop_parts(
    streams: &mut Streams,
    worker: Worker,
    recorder: &Recorder,
    web: Option<WebServer>,
) -> bool {
    streams.stop_all();
    recorder.stop();
    let finished = worker.stop_within(Duration::from_millis(1500));
    if !finished {
        // Expected with a big model on a CPU; nothing is wrong, so not a warning.
        tracing::info!(
            "inference: not waiting for the batch in progress (its labels are not published)"
        );
    }
    if let Some(w) = web {
        w.stop();
    }
    finished
}
