//! `[mqtt]`: how avscene reaches the broker and what it publishes there.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::problems::Problems;

/// The most messages `mqtt.outbox_capacity` may hold (a scene message is ≈ 0.5 kB).
pub const MAX_OUTBOX: usize = 1_000_000;

/// `[mqtt]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883 plain, usually 8883 with TLS).
    pub port: u16,
    /// MQTT client id; empty means `avscene-<hostname>-<process id>`, unique per process
    /// (two daemons with one client id would disconnect each other).
    pub client_id: String,
    /// Keep-alive interval in seconds (5..=65535). A broker that stops answering (a
    /// half-open connection) is given up on within 1.5 × this.
    pub keep_alive_s: u64,
    /// Longest one connection attempt may take, TCP and TLS handshake and CONNACK
    /// included, in seconds (1..=300).
    pub connect_timeout_s: u64,
    /// User name; the password is read from `password_file`, never from this file.
    pub username: Option<String>,
    /// File holding the password (first line); keep it readable by the avscene user only.
    pub password_file: Option<PathBuf>,
    /// TLS to the broker; absent means plain TCP.
    pub tls: Option<TlsConfig>,
    /// QoS of the per-window scene messages (0, 1 or 2).
    pub qos: QoS,
    /// Topic prefix: messages go to `<prefix>/<stream>/scene`.
    pub topic_prefix: String,
    /// Messages kept until the broker acknowledges them (queued while it is away, and in
    /// flight); beyond this the oldest queued are dropped and counted.
    pub outbox_capacity: usize,
    /// Publish Home Assistant MQTT discovery configs.
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// The sensor's attributes (every class's probability, `<prefix>/<stream>/attributes`)
    /// are published when the label changes and at most this often otherwise, so Home
    /// Assistant's recorder does not write a row per stream per second (1..=86400).
    pub attributes_every_s: u64,
}

/// `[mqtt.tls]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) that signed the broker's certificate (PEM).
    pub ca_file: PathBuf,
    /// Client certificate (PEM), for brokers that require one; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM).
    pub key_file: Option<PathBuf>,
}

/// MQTT quality of service, as written in the config (0, 1 or 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum QoS {
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

impl TryFrom<u8> for QoS {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            other => Err(format!("QoS must be 0, 1 or 2, not {other}")),
        }
    }
}

impl From<QoS> for u8 {
    fn from(qos: QoS) -> u8 {
        match qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        }
    }
}

impl From<QoS> for rumqttc::QoS {
    fn from(qos: QoS) -> rumqttc::QoS {
        match qos {
            QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
            QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: String::new(),
            keep_alive_s: 30,
            connect_timeout_s: 5,
            username: None,
            password_file: None,
            attributes_every_s: 60,
            tls: None,
            qos: QoS::AtLeastOnce,
            topic_prefix: "avscene".into(),
            outbox_capacity: 10_000,
            discovery: true,
            discovery_prefix: "homeassistant".into(),
        }
    }
}

/// Topic levels must not contain MQTT wildcards or empty levels.
pub(crate) fn topic_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("must not be empty")
    } else if topic.contains(['+', '#']) {
        Some("must not contain the MQTT wildcards '+' or '#'")
    } else if topic.starts_with('/') || topic.ends_with('/') || topic.contains("//") {
        Some("must not start or end with '/' or contain an empty level")
    } else if topic.contains('\0') {
        Some("must not contain NUL")
    } else {
        None
    }
}

impl MqttConfig {
    /// The publisher: connects, announces `online`, describes `streams` to Home
    /// Assistant, then publishes what it is given.
    pub fn build(
        &self,
        streams: &[String],
        classes: &[String],
        model_id: &str,
    ) -> Result<super::Publisher, super::connection::MqttError> {
        super::Publisher::start(self, streams, classes, model_id)
    }

    pub fn validate(&self, problems: &mut Problems) {
        if self.host.trim().is_empty() {
            problems.push("mqtt.host", "must not be empty");
        }
        if self.port == 0 {
            problems.push("mqtt.port", "must be 1..=65535, not 0");
        }
        if self.keep_alive_s < 5 {
            problems.push(
                "mqtt.keep_alive_s",
                format!("must be at least 5 seconds, not {}", self.keep_alive_s),
            );
        } else {
            problems.count("mqtt.keep_alive_s", self.keep_alive_s, 5..=65_535);
        }
        problems.count("mqtt.connect_timeout_s", self.connect_timeout_s, 1..=300);
        if let Some(reason) = topic_problem(&self.topic_prefix) {
            problems.push(
                "mqtt.topic_prefix",
                format!("'{}' {reason}", self.topic_prefix),
            );
        }
        if self.discovery {
            if let Some(reason) = topic_problem(&self.discovery_prefix) {
                problems.push(
                    "mqtt.discovery_prefix",
                    format!("'{}' {reason}", self.discovery_prefix),
                );
            }
        }
        problems.count("mqtt.outbox_capacity", self.outbox_capacity, 1..=MAX_OUTBOX);
        problems.count(
            "mqtt.attributes_every_s",
            self.attributes_every_s,
            1..=86_400,
        );
        match (&self.username, &self.password_file) {
            (None, Some(_)) => {
                problems.push("mqtt.password_file", "is set but mqtt.username is not")
            }
            (Some(user), _) if user.is_empty() => {
                problems.push("mqtt.username", "must not be empty when set")
            }
            _ => {}
        }
        if let Some(file) = &self.password_file {
            if let Err(error) = std::fs::File::open(file) {
                problems.push(
                    "mqtt.password_file",
                    format!("cannot read {}: {error}", file.display()),
                );
            }
        }
        if let Some(tls) = &self.tls {
            if !cfg!(feature = "tls") {
                problems.push(
                    "mqtt.tls",
                    "this avscene was built without TLS support (--no-default-features); rebuild with the default features",
                );
            }
            let files = [
                ("mqtt.tls.ca_file", Some(&tls.ca_file)),
                ("mqtt.tls.cert_file", tls.cert_file.as_ref()),
                ("mqtt.tls.key_file", tls.key_file.as_ref()),
            ];
            for (key, file) in files {
                if let Some(file) = file {
                    if let Err(error) = std::fs::File::open(file) {
                        problems.push(key, format!("cannot read {}: {error}", file.display()));
                    }
                }
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                problems.push("mqtt.tls", "cert_file and key_file must be given together");
            }
        }
    }
}
