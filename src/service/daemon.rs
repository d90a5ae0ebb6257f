//! `avscene run`: every configured stream, one shared model and inference worker, and
//! the MQTT publisher, until SIGINT/SIGTERM (a clean stop: sources stopped, `stopped`
//! published, exit 0). SIGHUP re-reads the configuration: added streams start, removed
//! ones stop (and leave Home Assistant), changed ones restart; the model stays loaded;
//! an invalid new configuration is logged and the running one kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::capture::{StreamHandle, StreamSpec, WindowSender, spawn, window_queue};
use crate::config::Settings;
use crate::infer::{Engine, spawn_worker};
use crate::model::{Model, ModelSpec};
use crate::publish::Publisher;

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

    /// Apply a new configuration's streams; returns the names of removed streams.
    fn reload(&mut self, settings: Settings) -> Vec<String> {
        self.settings = settings;
        let wanted: HashMap<String, StreamSpec> = self
            .settings
            .streams
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let mut removed = Vec::new();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            match wanted.get(&name) {
                Some(spec) if spec.launch == self.running[&name].0.launch => {}
                Some(_) => {
                    tracing::info!("stream '{name}': changed, restarting");
                    if let Some((_, handle)) = self.running.remove(&name) {
                        handle.stop();
                    }
                }
                None => {
                    tracing::info!("stream '{name}': removed");
                    if let Some((_, handle)) = self.running.remove(&name) {
                        handle.stop();
                    }
                    removed.push(name);
                }
            }
        }
        for (name, spec) in wanted {
            if !self.running.contains_key(&name) {
                self.start(spec);
            }
        }
        removed
    }

    fn stop_all(&mut self) {
        for (_, (_, handle)) in self.running.drain() {
            handle.stop();
        }
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

/// Run until SIGINT or SIGTERM.
pub fn run(config: Option<&Path>) -> Result<(), DaemonError> {
    let config_path: Option<PathBuf> = config.map(Path::to_path_buf);
    let settings = Settings::load(config)?;
    let model = load_model(&settings)?;
    tracing::info!("model {} on {:?}", model.id, model.vs.device());
    let classes = model.spec.classes.clone();
    let stream_names: Vec<String> = settings.streams.iter().map(|s| s.name.clone()).collect();
    let publisher = Arc::new(Publisher::start(
        &settings.config.mqtt,
        &stream_names,
        &classes,
        &model.id,
    )?);

    let (windows, window_rx) = window_queue(settings.config.inference.queue_capacity);
    let (results_tx, results_rx) = crossbeam_channel::bounded(1024);
    let engine = Engine::new(model, &settings.config.inference);
    let worker = spawn_worker(
        engine,
        &settings.config.inference,
        settings.config.model.threads,
        window_rx,
        results_tx,
    )
    .map_err(|e| DaemonError::Start(format!("cannot start the inference thread: {e}")))?;
    let forward = {
        let publisher = publisher.clone();
        std::thread::Builder::new()
            .name("results".into())
            .spawn(move || {
                for result in results_rx.iter() {
                    tracing::debug!(
                        "{}: {} ({:.2})",
                        result.stream,
                        result.label,
                        result.confidence
                    );
                    publisher.publish(result);
                }
            })
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
    tracing::info!("avscene running: {} stream(s)", streams.running.len());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Start(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
            (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
        else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match Settings::load(config_path.as_deref()) {
                    Ok(new) => {
                        tracing::info!("SIGHUP: configuration re-read from {}", new.file.display());
                        for name in streams.reload(new) {
                            publisher.remove_stream(&name);
                        }
                    }
                    Err(error) => tracing::error!("SIGHUP: invalid configuration, keeping the running one: {error}"),
                },
            }
        }
    });
    tracing::info!("stopping");
    streams.stop_all();
    drop(streams);
    // The worker finishes its batch; the results thread ends with the channel.
    let _ = worker.stop();
    let _ = forward.join();
    match Arc::try_unwrap(publisher) {
        Ok(publisher) => publisher.stop(),
        Err(_) => tracing::warn!("mqtt: publisher still in use at shutdown"),
    }
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
