//! Publishing scene labels over MQTT (rumqttc on tokio) and Home Assistant discovery.

mod config;
pub mod connection;

pub use config::{MqttConfig, QoS, TlsConfig};
