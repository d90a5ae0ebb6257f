//! The MQTT contract: the topics of a stream and the payloads sent there, as serialised
//! structs (see the README's MQTT section).

use std::time::SystemTime;

use serde::Serialize;

use super::MqttConfig;
use crate::infer::SceneResult;
use crate::support::ByLabel;

/// `<prefix>/<stream>/scene`: one message per window.
pub fn scene_topic(prefix: &str, stream: &str) -> String {
    format!("{prefix}/{stream}/scene")
}

/// `<prefix>/<stream>/state`: the current label, retained.
pub fn state_topic(prefix: &str, stream: &str) -> String {
    format!("{prefix}/{stream}/state")
}

/// `<prefix>/<stream>/availability`: `online` while the stream's source delivers,
/// `offline` while it fails, retained.
pub fn availability_topic(prefix: &str, stream: &str) -> String {
    format!("{prefix}/{stream}/availability")
}

/// `<prefix>/<stream>/attributes`: every class's probability, retained; published when
/// the label changes and at most every `mqtt.attributes_every_s` otherwise (the Home
/// Assistant sensor's attributes).
pub fn attributes_topic(prefix: &str, stream: &str) -> String {
    format!("{prefix}/{stream}/attributes")
}

/// `<prefix>/<stream>/record/set`: a command to record labelled clips (JSON body).
pub fn record_command_topic(prefix: &str, stream: &str) -> String {
    format!("{prefix}/{stream}/record/set")
}

/// `<prefix>/<stream>/record/state`: the recording's progress (JSON), retained.
pub fn record_state_topic(prefix: &str, stream: &str) -> String {
    format!("{prefix}/{stream}/record/state")
}

/// `<prefix>/status`: `online`, `offline` (Last Will) or `stopped`, retained.
pub fn status_topic(prefix: &str) -> String {
    format!("{prefix}/status")
}

/// Home Assistant's discovery topic of a stream's scene sensor.
pub fn discovery_topic(config: &MqttConfig, stream: &str) -> String {
    format!(
        "{}/sensor/avscene_{stream}/scene/config",
        config.discovery_prefix
    )
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The JSON of `<prefix>/<stream>/scene`.
#[derive(Serialize)]
struct ScenePayload<'a> {
    stream: &'a str,
    label: &'a str,
    confidence: f32,
    probabilities: ByLabel<'a>,
    start: String,
    end: String,
    latency_ms: f64,
    queue_wait_ms: f64,
    compute_ms: f64,
    model: &'a str,
    filled: Filled,
    seq: u64,
    run: &'a str,
}

#[derive(Serialize)]
struct Filled {
    samples: usize,
    frames: usize,
}

/// The payload of `<prefix>/<stream>/scene` for a result of the daemon's run `run`.
pub fn scene_payload(result: &SceneResult, classes: &[String], run: &str) -> serde_json::Value {
    let latency = SystemTime::now()
        .duration_since(result.end)
        .unwrap_or_default();
    let payload = ScenePayload {
        stream: &result.stream,
        label: &result.label,
        confidence: result.confidence,
        probabilities: ByLabel {
            labels: classes,
            values: &result.probabilities,
        },
        start: rfc3339(result.start),
        end: rfc3339(result.end),
        latency_ms: latency.as_secs_f64() * 1000.0,
        queue_wait_ms: result.queue_wait.as_secs_f64() * 1000.0,
        compute_ms: result.compute.as_secs_f64() * 1000.0,
        model: &result.model_id,
        filled: Filled {
            samples: result.filled_samples,
            frames: result.filled_frames,
        },
        seq: result.seq,
        run,
    };
    serde_json::to_value(payload).unwrap_or_default()
}

/// The payload of `<prefix>/<stream>/attributes`: every class's probability.
pub fn attributes_payload(result: &SceneResult, classes: &[String]) -> serde_json::Value {
    serde_json::to_value(ByLabel {
        labels: classes,
        values: &result.probabilities,
    })
    .unwrap_or_default()
}

/// Home Assistant's MQTT discovery config for a stream's scene sensor.
#[derive(Serialize)]
struct Discovery {
    name: &'static str,
    unique_id: String,
    /// Home Assistant ≥ 2025.10 names the entity from this (and deprecates `object_id`);
    /// `object_id` stays for older versions.
    default_entity_id: String,
    object_id: String,
    state_topic: String,
    json_attributes_topic: String,
    availability: [Availability; 2],
    /// Available only while both say so: the daemon and the stream's source.
    availability_mode: &'static str,
    icon: &'static str,
    device: Device,
}

#[derive(Serialize)]
struct Availability {
    topic: String,
    value_template: &'static str,
}

#[derive(Serialize)]
struct Device {
    identifiers: [String; 1],
    name: String,
    manufacturer: &'static str,
    model: String,
    sw_version: &'static str,
}

/// The discovery config of a stream's scene sensor.
pub fn discovery_payload(config: &MqttConfig, stream: &str, model_id: &str) -> serde_json::Value {
    let prefix = &config.topic_prefix;
    let payload = Discovery {
        name: "Scene",
        unique_id: format!("avscene_{stream}_scene"),
        default_entity_id: format!("sensor.avscene_{stream}_scene"),
        object_id: format!("avscene_{stream}_scene"),
        state_topic: state_topic(prefix, stream),
        json_attributes_topic: attributes_topic(prefix, stream),
        availability: [
            Availability {
                topic: status_topic(prefix),
                value_template: "{{ 'online' if value == 'online' else 'offline' }}",
            },
            Availability {
                topic: availability_topic(prefix, stream),
                value_template: "{{ 'online' if value == 'online' else 'offline' }}",
            },
        ],
        availability_mode: "all",
        icon: "mdi:map-marker-radius",
        device: Device {
            identifiers: [format!("avscene_{stream}")],
            name: format!("avscene {stream}"),
            manufacturer: "avscene",
            model: model_id.to_string(),
            sw_version: env!("CARGO_PKG_VERSION"),
        },
    };
    serde_json::to_value(payload).unwrap_or_default()
}

/// A run id: 8 hex digits from the start time and process id.
pub fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!("{now}-{}", std::process::id());
    format!("{:08x}", crate::support::fnv1a(seed.as_bytes()) as u32)
}
