//! What the publisher tells Home Assistant and consumers about the streams themselves:
//! the discovery configs, each stream's availability (its source delivers and it has a
//! label of this run), and streams added or removed on reload.

use rumqttc::QoS;

use super::messages::{
    attributes_topic, availability_topic, discovery_payload, discovery_topic, record_state_topic,
    state_topic, status_topic,
};
use super::mqtt::Loop;
use super::outbox::Message;

impl Loop {
    /// A stream is available while its source delivers and it has a label of this run
    /// on the state topic: until then the retained label is an earlier one's (a
    /// restart, an outage), which Home Assistant must not show as current.
    pub(super) fn is_available(&self, stream: &str) -> bool {
        self.available.get(stream) == Some(&true) && self.last_state.contains_key(stream)
    }

    /// Publish the stream's availability if it changed (before the first connection
    /// there is nothing to change: the announcement says it).
    pub(super) fn say_availability(&mut self, stream: &str) {
        let now = self.is_available(stream);
        match self.said_available.get_mut(stream) {
            Some(said) if *said != now => {
                *said = now;
                let message = self.availability(stream, now);
                self.outbox.push(message);
            }
            _ => {}
        }
    }

    /// What a (re)connection announces: `online` first, then the discovery configs and
    /// each stream's availability — a broker restarted without persistence forgot it,
    /// and what it kept from an earlier run is out of date.
    pub(super) fn announce(&mut self) -> Vec<Message> {
        let status = status_topic(&self.config.topic_prefix);
        let mut messages = vec![retained(status, "online".into())];
        messages.extend(self.discovery());
        for stream in self.streams.clone() {
            let now = self.is_available(&stream);
            self.said_available.insert(stream.clone(), now);
            messages.push(self.availability(&stream, now));
        }
        messages
    }

    pub(super) fn availability(&self, stream: &str, available: bool) -> Message {
        let payload = if available { "online" } else { "offline" };
        let topic = availability_topic(&self.config.topic_prefix, stream);
        retained(topic, payload.into())
    }

    pub(super) fn discovery(&self) -> Vec<Message> {
        if !self.config.discovery {
            return Vec::new();
        }
        self.streams
            .iter()
            .map(|s| {
                let payload = discovery_payload(&self.config, s, &self.model_id).to_string();
                retained(discovery_topic(&self.config, s), payload)
            })
            .collect()
    }

    /// A stream added on reload: describe it to Home Assistant.
    pub(super) fn add_stream(&mut self, stream: String) {
        if !self.streams.contains(&stream) {
            self.streams.push(stream.clone());
        }
        // Not available until it delivers a label (the broker may hold an old `online`).
        self.said_available.insert(stream.clone(), false);
        self.outbox.push(self.availability(&stream, false));
        if self.config.discovery {
            let payload = discovery_payload(&self.config, &stream, &self.model_id).to_string();
            let topic = discovery_topic(&self.config, &stream);
            self.outbox.push(retained(topic, payload));
        }
    }

    /// A stream removed: clear its retained state and discovery config.
    pub(super) fn remove_stream(&mut self, stream: &str) {
        self.streams.retain(|s| s != stream);
        self.last_state.remove(stream);
        self.last_attributes.remove(stream);
        self.available.remove(stream);
        self.said_available.remove(stream);
        let prefix = &self.config.topic_prefix;
        let mut clear = vec![
            state_topic(prefix, stream),
            attributes_topic(prefix, stream),
            availability_topic(prefix, stream),
            record_state_topic(prefix, stream),
        ];
        if self.config.discovery {
            clear.push(discovery_topic(&self.config, stream));
        }
        for topic in clear {
            self.outbox.push(retained(topic, String::new()));
        }
    }
}

/// A retained QoS 1 message (status, state, discovery).
pub(super) fn retained(topic: String, payload: String) -> Message {
    Message {
        topic,
        payload,
        qos: QoS::AtLeastOnce,
        retain: true,
    }
}
