//! Publishing scene labels over MQTT (rumqttc on tokio) and Home Assistant discovery.

mod announce;
mod config;
pub mod connection;
mod driver;
mod messages;
mod mqtt;
mod outbox;
mod stats;

pub use config::{MqttConfig, QoS, TlsConfig};
pub use messages::{
    availability_topic, discovery_payload, discovery_topic, scene_payload, scene_topic,
    state_topic, status_topic,
};
pub use mqtt::Publisher;
pub use stats::PublishStats;
