//! The outbox: messages waiting for the broker, and those handed to the connection that
//! the broker has not acknowledged yet. A message leaves only when it is acknowledged
//! (QoS 1: PUBACK, QoS 2: PUBCOMP; QoS 0 once written); when a connection is lost,
//! everything unacknowledged goes back to the front in order and is sent again on the
//! next one. rumqttc itself forgets unacknowledged messages when it reconnects to a
//! clean session, so this is what makes delivery at-least-once across broker restarts
//! and hangs. `capacity` bounds both parts together; the oldest queued message is
//! dropped (and counted) beyond it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rumqttc::{AsyncClient, QoS};

use super::stats::PublishStats;

/// Most messages handed to the connection at once (rumqttc's default in-flight window).
pub const MAX_IN_FLIGHT: u16 = 100;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: String,
    pub qos: QoS,
    pub retain: bool,
}

/// A message handed to the connection: its packet id once rumqttc has written it.
#[derive(Debug)]
struct InFlight {
    message: Message,
    written: Option<u16>,
}

pub struct Outbox {
    queued: VecDeque<Message>,
    in_flight: VecDeque<InFlight>,
    capacity: usize,
    stats: Arc<PublishStats>,
}

impl Outbox {
    pub fn new(capacity: usize, stats: Arc<PublishStats>) -> Outbox {
        Outbox {
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            capacity: capacity.max(1),
            stats,
        }
    }

    /// Nothing waits and nothing is unacknowledged.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.in_flight.is_empty()
    }

    /// Queue a message at the back. A retained message replaces a queued one for the
    /// same topic (the broker keeps only the last); past the capacity the oldest queued
    /// message is dropped and counted.
    pub fn push(&mut self, message: Message) {
        self.supersede(&message);
        if self.queued.len() + self.in_flight.len() >= self.capacity {
            self.count_dropped();
            if self.queued.pop_front().is_none() {
                return; // everything is in flight: the new message is the one left out
            }
        }
        self.queued.push_back(message);
        self.update_gauges();
    }

    /// Queue messages ahead of everything waiting (what a new connection announces).
    pub fn push_front(&mut self, messages: Vec<Message>) {
        for message in &messages {
            self.supersede(message);
        }
        for message in messages.into_iter().rev() {
            self.queued.push_front(message);
        }
        self.update_gauges();
    }

    /// Hand queued messages to the client while its window has room.
    pub fn hand_over(&mut self, client: &AsyncClient) {
        let window = usize::from(MAX_IN_FLIGHT).min(self.capacity);
        while self.in_flight.len() < window {
            let Some(m) = self.queued.front() else { break };
            if client
                .try_publish(&m.topic, m.qos, m.retain, m.payload.clone())
                .is_err()
            {
                break; // the client's queue is full: the rest waits
            }
            if let Some(message) = self.queued.pop_front() {
                self.in_flight.push_back(InFlight {
                    message,
                    written: None,
                });
            }
        }
        self.update_gauges();
    }

    /// rumqttc wrote a publish with this packet id (0 for QoS 0). It writes them in the
    /// order they were handed over, so it is the oldest one not yet written.
    pub fn written(&mut self, pkid: u16) {
        let Some(index) = self.in_flight.iter().position(|f| f.written.is_none()) else {
            return;
        };
        if self.in_flight[index].message.qos == QoS::AtMostOnce {
            self.in_flight.remove(index);
            self.count_published();
        } else {
            self.in_flight[index].written = Some(pkid);
        }
        self.update_gauges();
    }

    /// The broker acknowledged packet `pkid` of QoS `qos` (PUBACK for 1, PUBCOMP for 2).
    pub fn acknowledged(&mut self, pkid: u16, qos: QoS) {
        let found = self
            .in_flight
            .iter()
            .position(|f| f.written == Some(pkid) && f.message.qos == qos);
        if let Some(index) = found {
            self.in_flight.remove(index);
            self.count_published();
            self.update_gauges();
        }
    }

    /// The connection is gone: what it did not acknowledge goes back to the front, in
    /// order, to be sent again on the next one.
    pub fn requeue(&mut self) {
        let returned: Vec<Message> = self.in_flight.drain(..).map(|f| f.message).collect();
        for message in returned.into_iter().rev() {
            self.queued.push_front(message);
        }
        self.update_gauges();
    }

    /// A queued retained message for the same topic is out of date.
    fn supersede(&mut self, message: &Message) {
        if message.retain {
            self.queued
                .retain(|m| !(m.retain && m.topic == message.topic));
        }
    }

    fn count_published(&self) {
        self.stats.published.fetch_add(1, Ordering::Relaxed);
    }

    fn count_dropped(&self) {
        let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped == 1 || dropped % 1000 == 0 {
            tracing::warn!(
                "mqtt: the outbox is full ({} messages); {dropped} dropped so far (oldest first)",
                self.capacity
            );
        }
    }

    fn update_gauges(&self) {
        let stats = &self.stats;
        stats
            .outbox
            .store(self.queued.len() as u64, Ordering::Relaxed);
        stats
            .in_flight
            .store(self.in_flight.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, qos: QoS, retain: bool) -> Message {
        Message {
            topic: topic.into(),
            payload: String::new(),
            qos,
            retain,
        }
    }

    fn outbox(capacity: usize) -> (Outbox, AsyncClient, rumqttc::EventLoop) {
        let options = rumqttc::MqttOptions::new("test", "127.0.0.1", 1);
        let (client, events) = AsyncClient::new(options, 256);
        let stats = Arc::new(PublishStats::default());
        (Outbox::new(capacity, stats), client, events)
    }

    fn topics(o: &Outbox) -> Vec<String> {
        o.in_flight
            .iter()
            .map(|f| &f.message)
            .chain(o.queued.iter())
            .map(|m| m.topic.clone())
            .collect()
    }

    #[test]
    fn unacknowledged_messages_return_in_order_and_acknowledged_ones_leave() {
        let (mut o, client, _events) = outbox(100);
        for t in ["a", "b", "c", "d"] {
            o.push(message(t, QoS::AtLeastOnce, false));
        }
        o.hand_over(&client);
        assert_eq!(o.in_flight.len(), 4);
        o.written(1);
        o.written(2);
        o.written(3);
        o.acknowledged(2, QoS::AtLeastOnce); // "b"
        o.acknowledged(9, QoS::AtLeastOnce); // unknown: ignored
        o.push(message("e", QoS::AtLeastOnce, false));
        o.requeue();
        assert_eq!(topics(&o), ["a", "c", "d", "e"]);
        assert_eq!(o.stats.published.load(Ordering::Relaxed), 1);
        assert!(o.in_flight.is_empty());
    }

    #[test]
    fn qos0_counts_once_written_and_qos2_waits_for_pubcomp() {
        let (mut o, client, _events) = outbox(100);
        o.push(message("zero", QoS::AtMostOnce, false));
        o.push(message("two", QoS::ExactlyOnce, false));
        o.hand_over(&client);
        o.written(0);
        assert_eq!(topics(&o), ["two"]);
        o.written(1);
        o.acknowledged(1, QoS::AtLeastOnce); // a PUBACK does not complete QoS 2
        assert_eq!(topics(&o), ["two"]);
        o.acknowledged(1, QoS::ExactlyOnce);
        assert!(o.is_empty());
        assert_eq!(o.stats.published.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_bound_holds_over_queued_and_in_flight_and_drops_are_counted() {
        let (mut o, client, _events) = outbox(3);
        o.push(message("a", QoS::AtLeastOnce, false));
        o.push(message("b", QoS::AtLeastOnce, false));
        o.hand_over(&client); // both in flight
        o.push(message("c", QoS::AtLeastOnce, false));
        o.push(message("d", QoS::AtLeastOnce, false)); // drops "c", the oldest queued
        assert_eq!(topics(&o), ["a", "b", "d"]);
        assert_eq!(o.stats.dropped.load(Ordering::Relaxed), 1);
        o.requeue();
        assert_eq!(topics(&o), ["a", "b", "d"]);
    }

    #[test]
    fn a_retained_message_replaces_the_queued_one_for_its_topic() {
        let (mut o, _client, _events) = outbox(100);
        o.push(message("state", QoS::AtLeastOnce, true));
        o.push(message("scene", QoS::AtLeastOnce, false));
        o.push(message("state", QoS::AtLeastOnce, true));
        assert_eq!(topics(&o), ["scene", "state"]);
        o.push_front(vec![message("status", QoS::AtLeastOnce, true)]);
        assert_eq!(topics(&o), ["status", "scene", "state"]);
    }
}
