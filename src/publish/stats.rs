//! The publisher's counters and the metrics that describe them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::support::metrics::{Collector, Encoder, counter, gauge};

/// Counters of the publisher.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub connected: AtomicBool,
    /// Messages the broker acknowledged (QoS 0: written to the connection).
    pub published: AtomicU64,
    /// Messages handed to the connection, not yet acknowledged.
    pub in_flight: AtomicU64,
    /// Messages dropped because the outbox was full (broker away too long).
    pub dropped: AtomicU64,
    /// Results refused because the publisher's input queue was full.
    pub refused: AtomicU64,
    pub outbox: AtomicU64,
}

impl Collector for PublishStats {
    fn encode(&self, mut encoder: Encoder) -> Result<(), std::fmt::Error> {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let e = &mut encoder;
        let connected = self.connected.load(Ordering::Relaxed);
        gauge(
            e,
            "avscene_mqtt_connected",
            "1 while connected to the broker.",
            f64::from(u8::from(connected)),
        )?;
        counter(
            e,
            "avscene_mqtt_published",
            "Messages the broker acknowledged (QoS 0: written to the connection).",
            read(&self.published),
        )?;
        gauge(
            e,
            "avscene_mqtt_outbox_messages",
            "Messages waiting for a connection to the broker.",
            read(&self.outbox) as f64,
        )?;
        gauge(
            e,
            "avscene_mqtt_in_flight_messages",
            "Messages sent, not yet acknowledged by the broker.",
            read(&self.in_flight) as f64,
        )?;
        counter(
            e,
            "avscene_mqtt_dropped",
            "Messages dropped because the outbox was full.",
            read(&self.dropped),
        )?;
        counter(
            e,
            "avscene_mqtt_refused",
            "Results refused because the publisher's queue was full.",
            read(&self.refused),
        )
    }
}
