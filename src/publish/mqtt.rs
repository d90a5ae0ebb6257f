//! The MQTT publisher: one thread with a small tokio runtime owns the connection. Scene
//! results come in through a bounded channel that never blocks the inference worker;
//! messages wait in a bounded outbox while the broker is away (the oldest dropped and
//! counted beyond it) and go out in order once it is back. The connection announces
//! itself on `<prefix>/status` (`online`; `offline` as Last Will; `stopped` on a clean
//! stop) and describes each stream to Home Assistant.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use tokio::sync::mpsc;

use super::MqttConfig;
use super::connection::{client_id, explain, options};
use super::messages::scene_topic;
use super::messages::{
    discovery_payload, discovery_topic, scene_payload, state_topic, status_topic,
};
use super::stats::PublishStats;
use crate::infer::SceneResult;

/// How often the retained state is re-published when the label does not change.
const STATE_HEARTBEAT: Duration = Duration::from_secs(60);

enum Command {
    Scene(Box<SceneResult>),
    /// A stream was added (on reload): describe it to Home Assistant.
    AddStream(String),
    /// A stream was removed: clear its retained discovery config and state.
    RemoveStream(String),
    Stop,
    /// Tests: vanish without a DISCONNECT, as a killed process would.
    Abort,
}

/// A running publisher.
pub struct Publisher {
    tx: mpsc::Sender<Command>,
    pub stats: Arc<PublishStats>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// One message waiting to go out.
struct Message {
    topic: String,
    payload: String,
    qos: QoS,
    retain: bool,
}

impl Publisher {
    /// Start publishing for `streams` (their discovery configs are sent on connect).
    pub fn start(
        config: &MqttConfig,
        streams: &[String],
        classes: &[String],
        model_id: &str,
    ) -> Result<Publisher, super::connection::MqttError> {
        let mut options = options(config, &client_id(config))?;
        let status = status_topic(&config.topic_prefix);
        options.set_last_will(LastWill::new(&status, "offline", QoS::AtLeastOnce, true));
        let (tx, rx) = mpsc::channel(1024);
        let stats = Arc::new(PublishStats::default());
        let state = Loop {
            config: config.clone(),
            streams: streams.to_vec(),
            classes: classes.to_vec(),
            model_id: model_id.to_string(),
            outbox: VecDeque::new(),
            last_state: HashMap::new(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("mqtt: cannot start the async runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(state.run(options, rx));
            })
            .map_err(|e| super::connection::MqttError::Other(e.to_string()))?;
        Ok(Publisher {
            tx,
            stats,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queue a result without blocking; a full queue refuses it (counted).
    pub fn publish(&self, result: SceneResult) {
        if self.tx.try_send(Command::Scene(Box::new(result))).is_err() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Describe a stream added on reload to Home Assistant.
    pub fn add_stream(&self, stream: &str) {
        let _ = self.tx.try_send(Command::AddStream(stream.to_string()));
    }

    /// Forget a removed stream: its Home Assistant entity disappears (empty retained
    /// config) and its retained state is cleared.
    pub fn remove_stream(&self, stream: &str) {
        let _ = self.tx.try_send(Command::RemoveStream(stream.to_string()));
    }

    /// Publish `stopped`, deliver what is queued (for up to 2 s), disconnect. Results
    /// published afterwards are refused.
    pub fn stop(&self) {
        self.finish(Command::Stop);
    }

    /// Drop the connection without a goodbye, as a crashed process would (the broker
    /// then publishes the Last Will).
    pub fn abort(&self) {
        self.finish(Command::Abort);
    }

    fn finish(&self, command: Command) {
        // A full input queue must not keep the goodbye out: wait for room.
        let _ = self.tx.blocking_send(command);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

struct Loop {
    config: MqttConfig,
    streams: Vec<String>,
    classes: Vec<String>,
    model_id: String,
    outbox: VecDeque<Message>,
    /// Per stream: the label last published on the state topic, and when.
    last_state: HashMap<String, (String, Instant)>,
    stats: Arc<PublishStats>,
}

impl Loop {
    fn queue(&mut self, message: Message) {
        if self.outbox.len() >= self.config.outbox_capacity {
            self.outbox.pop_front();
            let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped % 1000 == 0 {
                tracing::warn!(
                    "mqtt: the outbox is full ({} messages); {dropped} dropped so far (oldest first)",
                    self.config.outbox_capacity
                );
            }
        }
        self.outbox.push_back(message);
        self.stats
            .outbox
            .store(self.outbox.len() as u64, Ordering::Relaxed);
    }

    fn scene(&mut self, result: &SceneResult) {
        let prefix = self.config.topic_prefix.clone();
        let stream = result.stream.to_string();
        if !self.streams.contains(&stream) {
            return; // removed while its last windows were in flight
        }
        let payload = scene_payload(result, &self.classes).to_string();
        let qos = self.config.qos.into();
        self.queue(Message {
            topic: scene_topic(&prefix, &stream),
            payload,
            qos,
            retain: false,
        });
        let due = match self.last_state.get(&stream) {
            Some((label, at)) => *label != result.label || at.elapsed() >= STATE_HEARTBEAT,
            None => true,
        };
        if due {
            self.last_state
                .insert(stream.clone(), (result.label.clone(), Instant::now()));
            let message = Message {
                topic: state_topic(&prefix, &stream),
                payload: result.label.clone(),
                qos: QoS::AtLeastOnce,
                retain: true,
            };
            self.queue(message);
        }
    }

    /// What a (re)connection announces: `online` first, then the discovery configs.
    fn announce(&mut self) -> Vec<Message> {
        let mut messages = vec![Message {
            topic: status_topic(&self.config.topic_prefix),
            payload: "online".into(),
            qos: QoS::AtLeastOnce,
            retain: true,
        }];
        messages.extend(self.discovery());
        messages
    }

    fn discovery(&self) -> Vec<Message> {
        if !self.config.discovery {
            return Vec::new();
        }
        self.streams
            .iter()
            .map(|s| Message {
                topic: discovery_topic(&self.config, s),
                payload: discovery_payload(&self.config, s, &self.model_id).to_string(),
                qos: QoS::AtLeastOnce,
                retain: true,
            })
            .collect()
    }

    /// Hand queued messages to the client while it takes them.
    fn flush(&mut self, client: &AsyncClient) {
        while let Some(m) = self.outbox.front() {
            match client.try_publish(&m.topic, m.qos, m.retain, m.payload.clone()) {
                Ok(()) => {
                    self.outbox.pop_front();
                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => break, // the client's queue is full: keep the rest for later
            }
        }
        self.stats
            .outbox
            .store(self.outbox.len() as u64, Ordering::Relaxed);
    }

    async fn run(mut self, options: rumqttc::MqttOptions, mut commands: mpsc::Receiver<Command>) {
        let (client, mut events) = AsyncClient::new(options, 256);
        let mut link = Link::default();
        loop {
            let waiting = link
                .retry_at
                .is_some_and(|t| t > tokio::time::Instant::now());
            let next = tokio::select! {
                event = events.poll(), if !waiting => self.on_event(event, &client, &mut link),
                _ = tokio::time::sleep_until(link.retry_at.unwrap_or_else(tokio::time::Instant::now)), if waiting => Flow::Go,
                command = commands.recv(), if link.stopping.is_none() => self.on_command(command, &client, &mut link),
                _ = tokio::time::sleep(Duration::from_millis(200)), if link.stopping.is_some() => {
                    if link.stopping.is_some_and(|s| s.elapsed() > Duration::from_secs(2)) {
                        Flow::End
                    } else {
                        Flow::Go
                    }
                }
            };
            if next == Flow::End {
                return;
            }
        }
    }

    fn connected(&self) -> bool {
        self.stats.connected.load(Ordering::Relaxed)
    }

    /// Hand queued messages over now, if there is a connection to take them.
    fn flush_if_connected(&mut self, client: &AsyncClient) {
        if self.connected() {
            self.flush(client);
        }
    }

    fn ha_status(&self) -> String {
        format!("{}/status", self.config.discovery_prefix)
    }

    /// What the connection reports.
    fn on_event(
        &mut self,
        event: Result<Event, rumqttc::ConnectionError>,
        client: &AsyncClient,
        link: &mut Link,
    ) -> Flow {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                self.stats.connected.store(true, Ordering::Relaxed);
                link.connected(&self.config);
                // Announce before anything queued while away.
                let mut announce = self.announce();
                announce.extend(self.outbox.drain(..));
                self.outbox = announce.into();
                if self.config.discovery {
                    let _ = client.try_subscribe(self.ha_status(), QoS::AtLeastOnce);
                }
                self.flush(client);
            }
            Ok(Event::Incoming(Packet::Publish(p)))
                if p.topic == self.ha_status() && p.payload.as_ref() == b"online" =>
            {
                // Home Assistant restarted: send the discovery configs again.
                for m in self.discovery() {
                    self.queue(m);
                }
                self.flush(client);
            }
            Ok(_) => {
                self.flush_if_connected(client);
                // Stopping: once everything queued is handed over, say goodbye (a clean
                // DISCONNECT: the broker keeps the Last Will to itself).
                if link.stopping.is_some() && self.outbox.is_empty() && !link.disconnect_sent {
                    link.disconnect_sent = client.try_disconnect().is_ok();
                }
            }
            Err(error) => {
                self.stats.connected.store(false, Ordering::Relaxed);
                if link.stopping.is_some() {
                    return Flow::End; // disconnected (or cannot deliver the rest)
                }
                link.failed(explain(&error, &self.config).to_string());
            }
        }
        Flow::Go
    }

    /// What the daemon asks.
    fn on_command(
        &mut self,
        command: Option<Command>,
        client: &AsyncClient,
        link: &mut Link,
    ) -> Flow {
        match command {
            Some(Command::Scene(result)) => self.scene(&result),
            Some(Command::AddStream(stream)) => self.add_stream(stream),
            Some(Command::RemoveStream(stream)) => self.remove_stream(&stream),
            Some(Command::Abort) => return Flow::End,
            Some(Command::Stop) | None => {
                link.stopping = Some(Instant::now());
                if !self.connected() {
                    return Flow::End;
                }
                self.queue(Message {
                    topic: status_topic(&self.config.topic_prefix),
                    payload: "stopped".into(),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                });
                self.flush(client);
                if self.outbox.is_empty() {
                    link.disconnect_sent = client.try_disconnect().is_ok();
                }
                return Flow::Go;
            }
        }
        self.flush_if_connected(client);
        Flow::Go
    }

    /// A stream added on reload: describe it to Home Assistant.
    fn add_stream(&mut self, stream: String) {
        if !self.streams.contains(&stream) {
            self.streams.push(stream.clone());
        }
        if self.config.discovery {
            let payload = discovery_payload(&self.config, &stream, &self.model_id).to_string();
            let topic = discovery_topic(&self.config, &stream);
            self.queue(Message {
                topic,
                payload,
                qos: QoS::AtLeastOnce,
                retain: true,
            });
        }
    }

    /// A stream removed: clear its retained state and discovery config.
    fn remove_stream(&mut self, stream: &str) {
        self.streams.retain(|s| s != stream);
        self.last_state.remove(stream);
        let mut clear = vec![state_topic(&self.config.topic_prefix, stream)];
        if self.config.discovery {
            clear.push(discovery_topic(&self.config, stream));
        }
        for topic in clear {
            self.queue(Message {
                topic,
                payload: String::new(),
                qos: QoS::AtLeastOnce,
                retain: true,
            });
        }
    }
}

/// Whether the loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    End,
}

/// The connection's state between events: the backoff while the broker is away (the
/// next attempt waits until `retry_at`; commands keep arriving into the outbox
/// meanwhile), the last failure (logged once per kind), and the stop in progress.
struct Link {
    backoff: Duration,
    retry_at: Option<tokio::time::Instant>,
    last_error: Option<String>,
    stopping: Option<Instant>,
    disconnect_sent: bool,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            backoff: Duration::from_millis(500),
            retry_at: None,
            last_error: None,
            stopping: None,
            disconnect_sent: false,
        }
    }
}

impl Link {
    fn connected(&mut self, config: &MqttConfig) {
        self.retry_at = None;
        if self.last_error.take().is_some() {
            tracing::info!("mqtt: connected to {}:{} again", config.host, config.port);
        }
        self.backoff = Duration::from_millis(500);
    }

    fn failed(&mut self, explained: String) {
        // Log a kind of failure once, not on every retry.
        if self.last_error.as_deref() != Some(explained.as_str()) {
            tracing::error!(
                "mqtt: {explained}; retrying with backoff, messages wait in the outbox"
            );
            self.last_error = Some(explained);
        }
        self.retry_at = Some(tokio::time::Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
    }
}
