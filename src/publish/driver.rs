//! The connection driver: a task that alone polls rumqttc's event loop and reports what
//! happens. Polling it anywhere else (in a `select!` beside incoming results) would
//! cancel a connection attempt every time a result arrives — a new TCP connection every
//! half second against a broker that never answers. Here every attempt runs to its
//! connect timeout, attempts are spaced by an exponential backoff, and a broker that
//! stops answering on an open connection (frozen, or a half-open TCP connection) is given
//! up on after 1.5 × keep-alive instead of rumqttc's 2 ×.

use std::time::Duration;

use rumqttc::{ConnectionError, Event, EventLoop, Packet};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The first wait after a failed or lost connection; it doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff; a shorter one that the broker
/// closed counts as short-lived (a sign of another client with the same id).
const STABLE: Duration = Duration::from_secs(10);

/// What the driver reports to the publisher.
#[derive(Debug)]
pub enum Report {
    Event(Event),
    /// The connection failed or was lost. The driver waits for the publisher's go-ahead
    /// (after it has taken back what was in flight) before it tries again.
    Lost(Lost),
}

#[derive(Debug)]
pub struct Lost {
    pub reason: Reason,
    /// Connections in a row the broker closed within [`STABLE`] of accepting them.
    pub short_lived: u32,
    /// When the next attempt starts.
    pub retry_in: Duration,
}

#[derive(Debug)]
pub enum Reason {
    Connection(ConnectionError),
    /// Nothing came from the broker for this long on an open connection.
    Silent(Duration),
}

pub struct Driver {
    pub events: EventLoop,
    pub reports: mpsc::Sender<Report>,
    /// The publisher's go-ahead after a [`Report::Lost`].
    pub resume: mpsc::Receiver<()>,
    pub keep_alive: Duration,
}

impl Driver {
    /// Connect, report, reconnect, until the publisher goes away.
    pub async fn run(mut self) {
        let mut backoff = INITIAL_BACKOFF;
        let mut short_lived = 0;
        loop {
            let (reason, lasted) = match self.connection().await {
                Some(lost) => lost,
                None => return, // the publisher is gone
            };
            match lasted {
                Some(time) if time >= STABLE => {
                    backoff = INITIAL_BACKOFF;
                    short_lived = 0;
                }
                Some(_) if matches!(reason, Reason::Connection(_)) => short_lived += 1,
                _ => {}
            }
            let lost = Lost {
                reason,
                short_lived,
                retry_in: backoff,
            };
            if self.reports.send(Report::Lost(lost)).await.is_err()
                || self.resume.recv().await.is_none()
            {
                return;
            }
            // Requests handed over before the publisher knew of the loss: it has taken
            // them back and sends them again, so rumqttc must not (a fresh session
            // would drop them anyway).
            self.events.clean();
            self.events.pending.clear();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection from its attempt to its loss: why it ended and how long it was up
    /// (None: it never was). None when the publisher is gone.
    async fn connection(&mut self) -> Option<(Reason, Option<Duration>)> {
        let silent = self.keep_alive * 3 / 2;
        let mut up_since: Option<Instant> = None;
        let mut heard = Instant::now();
        loop {
            let polled = match up_since {
                None => self.events.poll().await.map_err(Reason::Connection),
                Some(_) => tokio::select! {
                    event = self.events.poll() => event.map_err(Reason::Connection),
                    _ = tokio::time::sleep_until(heard + silent) => {
                        self.events.clean(); // drop the dead connection
                        Err(Reason::Silent(silent))
                    }
                },
            };
            match polled {
                Ok(event) => {
                    if let Event::Incoming(packet) = &event {
                        heard = Instant::now();
                        if matches!(packet, Packet::ConnAck(_)) {
                            up_since = Some(heard);
                        }
                    }
                    self.reports.send(Report::Event(event)).await.ok()?;
                }
                Err(reason) => return Some((reason, up_since.map(|t| t.elapsed()))),
            }
        }
    }
}
