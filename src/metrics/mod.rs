//! What the daemon tells about itself. Every stage describes its own metrics beside its
//! counters (a `prometheus-client` collector: capture's streams and queue, the inference
//! worker, the publisher); this module only gathers them, with the labels published per
//! stream, the model in use and the process's figures, into one registry written as
//! Prometheus (OpenMetrics) text on `/metrics`. `/health` applies the health policy
//! (`health.rs`); `crate::web` serves both.

mod config;
mod health;

use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::capture::{StreamMetrics, StreamStats, WindowSender};
use crate::infer::WorkerStats;
use crate::publish::PublishStats;
use crate::support::metrics::{Collector, counter_f64, gauge};
use crate::support::process;

pub use config::{MIN_TOKEN_LEN, MetricsConfig, read_token};
pub use health::{HealthPolicy, HealthReport, Labels, StreamHealth};

/// The model in use: `avscene_model_info{model_id, profile, device, version} 1`.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub id: String,
    pub profile: String,
    pub device: String,
}

impl Collector for ModelInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = Info::new(vec![
            ("model_id", self.id.clone()),
            ("profile", self.profile.clone()),
            ("device", self.device.clone()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ]);
        info.encode(encoder.encode_descriptor(
            "avscene_model",
            "The model in use.",
            None,
            info.metric_type(),
        )?)
    }
}

/// This process's memory and CPU, as every Prometheus client reports them.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(rss) = process::rss_bytes() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss as f64,
            )?;
        }
        if let Some(cpu) = process::cpu_seconds() {
            counter_f64(
                &mut encoder,
                "process_cpu_seconds",
                "User and system CPU time in seconds.",
                cpu,
            )?;
        }
        Ok(())
    }
}

/// The live state `/metrics` and `/health` are made from, shared by the daemon's threads.
pub struct Telemetry {
    pub model_id: String,
    pub publish: Arc<PublishStats>,
    streams: StreamMetrics,
    labels: Arc<Labels>,
    policy: HealthPolicy,
    registry: Registry,
}

impl Telemetry {
    pub fn new(
        model: ModelInfo,
        worker: Arc<WorkerStats>,
        publish: Arc<PublishStats>,
        queue: WindowSender,
        policy: HealthPolicy,
    ) -> Telemetry {
        let streams = StreamMetrics::default();
        let labels = Arc::new(Labels::default());
        let mut registry = Registry::default();
        let model_id = model.id.clone();
        registry.register_collector(Box::new(model));
        registry.register_collector(Box::new(streams.clone()));
        registry.register_collector(Box::new(labels.clone()));
        registry.register_collector(Box::new(queue));
        registry.register_collector(Box::new(worker));
        registry.register_collector(Box::new(publish.clone()));
        registry.register_collector(Box::new(Process));
        Telemetry {
            model_id,
            publish,
            streams,
            labels,
            policy,
            registry,
        }
    }

    /// The streams now running (after a start or reload).
    pub fn set_streams(&self, streams: Vec<Arc<StreamStats>>) {
        self.labels
            .set_streams(streams.iter().map(|s| s.name.as_str()));
        self.streams.set(streams);
    }

    /// A label for `stream` went out.
    pub fn record_result(&self, stream: &str) {
        self.labels.record(stream);
    }

    /// Streams whose labels are flowing, of all streams.
    pub fn live_streams(&self) -> (usize, usize) {
        self.policy.live(&self.streams.streams(), &self.labels)
    }

    pub fn health(&self) -> HealthReport {
        let connected = self
            .publish
            .connected
            .load(std::sync::atomic::Ordering::Relaxed);
        self.policy.check(
            &self.streams.streams(),
            &self.labels,
            connected,
            &self.model_id,
        )
    }

    /// Every metric, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("metrics: cannot write the exposition: {e}");
        }
        text
    }
}
