//! Publishing scene labels over MQTT (rumqttc on tokio) and Home Assistant discovery.

mod config;
pub mod connection;
mod mqtt;

pub use config::{MqttConfig, QoS, TlsConfig};
pub use mqtt::{
    PublishStats, Publisher, discovery_payload, discovery_topic, scene_payload, scene_topic,
    state_topic, status_topic,
};
