//! Publishing scene labels over MQTT (rumqttc on tokio) and Home Assistant discovery.

mod config;

pub use config::{MqttConfig, QoS, TlsConfig};
