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
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;

use super::MqttConfig;
use super::connection::{client_id, explain, options};
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

/// The topics of one stream.
pub fn scene_topic(prefix: &str, stream: &str) -> String {
    format!("{prefix}/{stream}/scene")
}
pub fn state_topic(prefix: &str, stream: &str) -> String {
    format!("{prefix}/{stream}/state")
}
pub fn status_topic(prefix: &str) -> String {
    format!("{prefix}/status")
}
pub fn discovery_topic(config: &MqttConfig, stream: &str) -> String {
    format!(
        "{}/sensor/avscene_{stream}/scene/config",
        config.discovery_prefix
    )
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The JSON of `<prefix>/<stream>/scene`.
pub fn scene_payload(result: &SceneResult, classes: &[String]) -> serde_json::Value {
    let probabilities: serde_json::Map<String, serde_json::Value> = classes
        .iter()
        .zip(&result.probabilities)
        .map(|(c, p)| (c.clone(), json!(p)))
        .collect();
    let latency = SystemTime::now()
        .duration_since(result.end)
        .unwrap_or_default();
    json!({
        "stream": &*result.stream,
        "label": result.label,
        "confidence": result.confidence,
        "probabilities": probabilities,
        "start": rfc3339(result.start),
        "end": rfc3339(result.end),
        "latency_ms": latency.as_secs_f64() * 1000.0,
        "queue_wait_ms": result.queue_wait.as_secs_f64() * 1000.0,
        "compute_ms": result.compute.as_secs_f64() * 1000.0,
        "model": result.model_id,
        "filled": { "samples": result.filled_samples, "frames": result.filled_frames },
        "seq": result.seq,
    })
}

/// Home Assistant's MQTT discovery config for a stream's scene sensor.
pub fn discovery_payload(config: &MqttConfig, stream: &str, model_id: &str) -> serde_json::Value {
    let prefix = &config.topic_prefix;
    json!({
        "name": "Scene",
        "unique_id": format!("avscene_{stream}_scene"),
        "object_id": format!("avscene_{stream}_scene"),
        "state_topic": state_topic(prefix, stream),
        "json_attributes_topic": scene_topic(prefix, stream),
        "json_attributes_template": "{{ value_json.probabilities | tojson }}",
        "availability": [{
            "topic": status_topic(prefix),
            "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
        }],
        "icon": "mdi:map-marker-radius",
        "device": {
            "identifiers": [format!("avscene_{stream}")],
            "name": format!("avscene {stream}"),
            "manufacturer": "avscene",
            "model": model_id,
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
    })
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
        let ha_status = format!("{}/status", self.config.discovery_prefix);
        let mut backoff = Duration::from_millis(500);
        // While the broker is away, the next connection attempt waits until then;
        // commands keep arriving into the outbox meanwhile.
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut last_error: Option<String> = None;
        let mut stopping: Option<Instant> = None;
        let mut disconnect_sent = false;
        loop {
            let waiting = retry_at.is_some_and(|t| t > tokio::time::Instant::now());
            tokio::select! {
                event = events.poll(), if !waiting => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        self.stats.connected.store(true, Ordering::Relaxed);
                        retry_at = None;
                        if last_error.take().is_some() {
                            tracing::info!("mqtt: connected to {}:{} again", self.config.host, self.config.port);
                        }
                        backoff = Duration::from_millis(500);
                        // Announce before anything queued while away.
                        let mut announce = self.announce();
                        announce.extend(self.outbox.drain(..));
                        self.outbox = announce.into();
                        if self.config.discovery {
                            let _ = client.try_subscribe(&ha_status, QoS::AtLeastOnce);
                        }
                        self.flush(&client);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ha_status && p.payload.as_ref() == b"online" => {
                        // Home Assistant restarted: send the discovery configs again.
                        for m in self.discovery() {
                            self.queue(m);
                        }
                        self.flush(&client);
                    }
                    Ok(_) => {
                        if self.stats.connected.load(Ordering::Relaxed) {
                            self.flush(&client);
                        }
                        // Stopping: once everything queued is handed over, say goodbye
                        // (a clean DISCONNECT: the broker keeps the Last Will to itself).
                        if stopping.is_some() && self.outbox.is_empty() && !disconnect_sent {
                            disconnect_sent = client.try_disconnect().is_ok();
                        }
                    }
                    Err(error) => {
                        self.stats.connected.store(false, Ordering::Relaxed);
                        if stopping.is_some() {
                            break; // disconnected (or cannot deliver the rest)
                        }
                        let explained = explain(&error, &self.config).to_string();
                        // Log a kind of failure once, not on every retry.
                        if last_error.as_deref() != Some(explained.as_str()) {
                            tracing::error!("mqtt: {explained}; retrying with backoff, messages wait in the outbox");
                            last_error = Some(explained);
                        }
                        retry_at = Some(tokio::time::Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                },
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if waiting => {}
                command = commands.recv(), if stopping.is_none() => match command {
                    Some(Command::Scene(result)) => {
                        self.scene(&result);
                        if self.stats.connected.load(Ordering::Relaxed) {
                            self.flush(&client);
                        }
                    }
                    Some(Command::AddStream(stream)) => {
                        if !self.streams.contains(&stream) {
                            self.streams.push(stream.clone());
                        }
                        if self.config.discovery {
                            let payload = discovery_payload(&self.config, &stream, &self.model_id).to_string();
                            let topic = discovery_topic(&self.config, &stream);
                            self.queue(Message { topic, payload, qos: QoS::AtLeastOnce, retain: true });
                        }
                        if self.stats.connected.load(Ordering::Relaxed) {
                            self.flush(&client);
                        }
                    }
                    Some(Command::RemoveStream(stream)) => {
                        self.streams.retain(|s| *s != stream);
                        self.last_state.remove(&stream);
                        let prefix = self.config.topic_prefix.clone();
                        let mut clear = vec![state_topic(&prefix, &stream)];
                        if self.config.discovery {
                            clear.push(discovery_topic(&self.config, &stream));
                        }
                        for topic in clear {
                            self.queue(Message { topic, payload: String::new(), qos: QoS::AtLeastOnce, retain: true });
                        }
                        if self.stats.connected.load(Ordering::Relaxed) {
                            self.flush(&client);
                        }
                    }
                    Some(Command::Abort) => return,
                    Some(Command::Stop) | None => {
                        stopping = Some(Instant::now());
                        if !self.stats.connected.load(Ordering::Relaxed) {
                            break;
                        }
                        self.queue(Message {
                            topic: status_topic(&self.config.topic_prefix),
                            payload: "stopped".into(),
                            qos: QoS::AtLeastOnce,
                            retain: true,
                        });
                        self.flush(&client);
                        if self.outbox.is_empty() {
                            disconnect_sent = client.try_disconnect().is_ok();
                        }
                    }
                },
                _ = tokio::time::sleep(Duration::from_millis(200)), if stopping.is_some() => {
                    if stopping.is_some_and(|s| s.elapsed() > Duration::from_secs(2)) {
                        break;
                    }
                }
            }
        }
    }
}
