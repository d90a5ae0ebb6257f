//! The MQTT publisher: one thread with a small tokio runtime owns the connection. Scene
//! results come in through a bounded channel that never blocks the inference worker and
//! wait in the [`Outbox`] until the broker acknowledges them: queued while it is away
//! (the oldest dropped and counted beyond the bound), sent again after any reconnect,
//! in order. The connection itself is polled by the [`Driver`] task. It announces itself
//! on `<prefix>/status` (`online`; `offline` as Last Will; `stopped` on a clean stop)
//! and describes each stream to Home Assistant (`announce.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, LastWill, Outgoing, Packet, QoS};
use tokio::sync::mpsc;

use super::MqttConfig;
use super::announce::retained;
use super::connection::{MqttError, client_id, event_loop, explain, options};
use super::driver::{Driver, Lost, Reason, Report};
use super::messages::{
    attributes_payload, attributes_topic, record_command_topic, record_state_topic, run_id,
    scene_payload, scene_topic, state_topic, status_topic,
};
use super::outbox::{MAX_IN_FLIGHT, Message, Outbox};
use super::stats::PublishStats;
use crate::infer::SceneResult;
use crate::record::{RecordAction, RecordRequest, RecordingState};

/// How often the retained state is re-published when the label does not change.
const STATE_HEARTBEAT: Duration = Duration::from_secs(60);
/// How long a stop waits for the broker to acknowledge what is queued.
const STOP_LIMIT: Duration = Duration::from_secs(2);

enum Command {
    Scene(Box<SceneResult>),
    /// A stream was added (on reload): describe it to Home Assistant.
    AddStream(String),
    /// A stream was removed: clear its retained discovery config and state.
    RemoveStream(String),
    /// A stream's source delivers (true) or fails (false).
    Available(String, bool),
    /// A stream's recording progress (JSON), for `<prefix>/<stream>/record/state`.
    RecordState(String, String),
    Stop,
    /// Tests: vanish without a DISCONNECT, as a killed process would.
    Abort,
}

/// A running publisher.
pub struct Publisher {
    tx: mpsc::Sender<Command>,
    pub stats: Arc<PublishStats>,
    /// Requests to record from `<prefix>/<stream>/record/set`, for the daemon.
    pub record_requests: crossbeam_channel::Receiver<RecordRequest>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Publisher {
    /// Start publishing for `streams` (their discovery configs are sent on connect).
    pub fn start(
        config: &MqttConfig,
        streams: &[String],
        classes: &[String],
        model_id: &str,
    ) -> Result<Publisher, MqttError> {
        let id = client_id(config);
        let mut options = options(config, &id)?;
        let status = status_topic(&config.topic_prefix);
        options.set_last_will(LastWill::new(&status, "offline", QoS::AtLeastOnce, true));
        options.set_inflight(MAX_IN_FLIGHT);
        let (tx, rx) = mpsc::channel(1024);
        let (requests, record_requests) = crossbeam_channel::bounded(64);
        let stats = Arc::new(PublishStats::default());
        let state = Loop {
            config: config.clone(),
            client_id: id,
            run_id: run_id(),
            streams: streams.to_vec(),
            classes: classes.to_vec(),
            model_id: model_id.to_string(),
            outbox: Outbox::new(config.outbox_capacity, stats.clone()),
            last_state: HashMap::new(),
            last_attributes: HashMap::new(),
            requests,
            available: HashMap::new(),
            said_available: HashMap::new(),
            stats: stats.clone(),
        };
        let keep_alive = Duration::from_secs(config.keep_alive_s);
        let (client, events) = event_loop(options, config);
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
                runtime.block_on(async move {
                    let (reports, reported) = mpsc::channel(64);
                    let (resume, resumed) = mpsc::channel(1);
                    tokio::spawn(
                        Driver {
                            events,
                            reports,
                            resume: resumed,
                            keep_alive,
                        }
                        .run(),
                    );
                    state.run(client, reported, resume, rx).await;
                });
            })
            .map_err(|e| MqttError::Other(e.to_string()))?;
        Ok(Publisher {
            tx,
            stats,
            record_requests,
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

    /// Say whether a stream's source delivers (its `availability` topic, which Home
    /// Assistant's entity follows beside the daemon's status).
    pub fn set_available(&self, stream: &str, available: bool) {
        let _ = self
            .tx
            .try_send(Command::Available(stream.to_string(), available));
    }

    /// Publish a stream's recording progress (retained JSON on its `record/state`).
    pub fn record_state(&self, stream: &str, payload: String) {
        let _ = self
            .tx
            .try_send(Command::RecordState(stream.to_string(), payload));
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

pub(super) struct Loop {
    pub(super) config: MqttConfig,
    pub(super) client_id: String,
    /// Tells this process's messages apart from a restarted daemon's (`run` in every
    /// scene message; `seq` counts within it).
    pub(super) run_id: String,
    pub(super) streams: Vec<String>,
    pub(super) classes: Vec<String>,
    pub(super) model_id: String,
    pub(super) outbox: Outbox,
    /// Per stream: the label last published on the state topic, and when.
    pub(super) last_state: HashMap<String, (String, Instant)>,
    /// Per stream: the label of the attributes last published, and when.
    pub(super) last_attributes: HashMap<String, (String, Instant)>,
    /// Where requests to record go (the daemon's end is [`Publisher::record_requests`]).
    pub(super) requests: crossbeam_channel::Sender<RecordRequest>,
    /// Per stream: whether its source delivers, as the daemon last said.
    pub(super) available: HashMap<String, bool>,
    /// Per stream: the availability last published (see [`Loop::is_available`]).
    pub(super) said_available: HashMap<String, bool>,
    pub(super) stats: Arc<PublishStats>,
}

impl Loop {
    fn scene(&mut self, result: &SceneResult) {
        let prefix = self.config.topic_prefix.clone();
        let stream = result.stream.to_string();
        if !self.streams.contains(&stream) {
            return; // removed while its last windows were in flight
        }
        let payload = scene_payload(result, &self.classes, &self.run_id).to_string();
        self.outbox.push(Message {
            topic: scene_topic(&prefix, &stream),
            payload,
            qos: self.config.qos.into(),
            retain: false,
        });
        if due(self.last_state.get(&stream), &result.label, STATE_HEARTBEAT) {
            self.last_state
                .insert(stream.clone(), (result.label.clone(), Instant::now()));
            self.outbox.push(retained(
                state_topic(&prefix, &stream),
                result.label.clone(),
            ));
        }
        // The probabilities change every window; Home Assistant records a row for each
        // attribute change, so they go out with a new label and otherwise seldom.
        let every = Duration::from_secs(self.config.attributes_every_s);
        if due(self.last_attributes.get(&stream), &result.label, every) {
            self.last_attributes
                .insert(stream.clone(), (result.label.clone(), Instant::now()));
            let payload = attributes_payload(result, &self.classes).to_string();
            self.outbox
                .push(retained(attributes_topic(&prefix, &stream), payload));
        }
        self.say_availability(&stream);
    }

    async fn run(
        mut self,
        client: AsyncClient,
        mut reports: mpsc::Receiver<Report>,
        resume: mpsc::Sender<()>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut link = Link::default();
        loop {
            let next = tokio::select! {
                report = reports.recv() => self.on_report(report, &client, &resume, &mut link),
                command = commands.recv(), if link.stopping.is_none() => self.on_command(command, &client, &mut link),
                _ = tokio::time::sleep(Duration::from_millis(200)), if link.stopping.is_some() => {
                    if link.stopping.is_some_and(|s| s.elapsed() > STOP_LIMIT) {
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

    /// Hand queued messages over, if there is a connection to take them; once a stop has
    /// everything acknowledged, say goodbye (a clean DISCONNECT: the broker keeps the
    /// Last Will to itself).
    fn hand_over(&mut self, client: &AsyncClient, link: &mut Link) {
        if !self.connected() {
            return;
        }
        self.outbox.hand_over(client);
        if link.stopping.is_some() && self.outbox.is_empty() && !link.disconnect_sent {
            link.disconnect_sent = client.try_disconnect().is_ok();
        }
    }

    fn ha_status(&self) -> String {
        format!("{}/status", self.config.discovery_prefix)
    }

    /// What the driver reports.
    fn on_report(
        &mut self,
        report: Option<Report>,
        client: &AsyncClient,
        resume: &mpsc::Sender<()>,
        link: &mut Link,
    ) -> Flow {
        match report {
            Some(Report::Event(event)) => self.on_event(event, client, link),
            Some(Report::Lost(lost)) => {
                self.stats.connected.store(false, Ordering::Relaxed);
                // Before the driver goes on: what it had not acknowledged is ours again.
                self.outbox.requeue();
                if link.stopping.is_some() {
                    return Flow::End; // cannot deliver the rest
                }
                link.failed(self.explain(&lost), lost.retry_in);
                let _ = resume.try_send(());
                Flow::Go
            }
            None => Flow::End, // the driver is gone
        }
    }

    fn explain(&self, lost: &Lost) -> MqttError {
        let address = format!("{}:{}", self.config.host, self.config.port);
        match &lost.reason {
            Reason::Silent(after) => MqttError::Silent {
                address,
                seconds: after.as_secs_f64(),
            },
            Reason::Connection(_) if lost.short_lived >= 2 => MqttError::TakenOver {
                address,
                client_id: self.client_id.clone(),
                times: lost.short_lived,
            },
            Reason::Connection(error) => explain(error, &self.config),
        }
    }

    fn on_event(&mut self, event: Event, client: &AsyncClient, link: &mut Link) -> Flow {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                self.stats.connected.store(true, Ordering::Relaxed);
                link.connected(&self.config);
                // Announce before anything queued while away.
                let announce = self.announce();
                self.outbox.push_front(announce);
                if self.config.discovery {
                    let _ = client.try_subscribe(self.ha_status(), QoS::AtLeastOnce);
                }
                let commands = record_command_topic(&self.config.topic_prefix, "+");
                let _ = client.try_subscribe(commands, QoS::AtLeastOnce);
            }
            Event::Incoming(Packet::Publish(p))
                if p.topic == self.ha_status() && p.payload.as_ref() == b"online" =>
            {
                // Home Assistant restarted: send the discovery configs again.
                for m in self.discovery() {
                    self.outbox.push(m);
                }
            }
            Event::Incoming(Packet::Publish(p)) => self.record_command(&p.topic, &p.payload),
            Event::Outgoing(Outgoing::Publish(pkid)) => self.outbox.written(pkid),
            Event::Incoming(Packet::PubAck(ack)) => {
                self.outbox.acknowledged(ack.pkid, QoS::AtLeastOnce)
            }
            Event::Incoming(Packet::PubComp(comp)) => {
                self.outbox.acknowledged(comp.pkid, QoS::ExactlyOnce)
            }
            Event::Outgoing(Outgoing::Disconnect) if link.stopping.is_some() => {
                return Flow::End;
            }
            _ => {}
        }
        self.hand_over(client, link);
        Flow::Go
    }

    /// `<prefix>/<stream>/record/set`: hand a request to the daemon; a body that is not
    /// one is answered on the stream's `record/state`.
    fn record_command(&mut self, topic: &str, body: &[u8]) {
        let prefix = &self.config.topic_prefix;
        let Some(stream) = topic
            .strip_prefix(&format!("{prefix}/"))
            .and_then(|rest| rest.strip_suffix("/record/set"))
        else {
            return;
        };
        match RecordAction::from_json(body) {
            Ok(action) => {
                let request = RecordRequest {
                    stream: stream.to_string(),
                    action,
                };
                if self.requests.try_send(request).is_err() {
                    tracing::warn!("mqtt: {topic}: too many requests to record at once; ignored");
                }
            }
            Err(reason) => {
                tracing::warn!("mqtt: {topic}: {reason}");
                let refused = RecordingState::refused(stream, reason);
                let payload = serde_json::to_string(&refused).unwrap_or_default();
                let state = record_state_topic(prefix, stream);
                self.outbox.push(retained(state, payload));
            }
        }
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
            Some(Command::Available(stream, on)) if self.streams.contains(&stream) => {
                self.available.insert(stream.clone(), on);
                if !on {
                    // Back only with a new label: the last one is from before the outage.
                    self.last_state.remove(&stream);
                }
                self.say_availability(&stream);
            }
            Some(Command::Available(..)) => {}
            Some(Command::RecordState(stream, payload)) if self.streams.contains(&stream) => {
                let topic = record_state_topic(&self.config.topic_prefix, &stream);
                self.outbox.push(retained(topic, payload));
            }
            Some(Command::RecordState(..)) => {}
            Some(Command::Abort) => return Flow::End,
            Some(Command::Stop) | None => {
                link.stopping = Some(Instant::now());
                if !self.connected() {
                    return Flow::End;
                }
                let status = status_topic(&self.config.topic_prefix);
                self.outbox.push(retained(status, "stopped".into()));
            }
        }
        self.hand_over(client, link);
        Flow::Go
    }
}

/// Whether a message about `label` is due, after `last` (label, when): a new label, or
/// `every` since the last one.
fn due(last: Option<&(String, Instant)>, label: &str, every: Duration) -> bool {
    last.is_none_or(|(said, at)| said != label || at.elapsed() >= every)
}

/// Whether the loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    End,
}

/// The connection's state between events: the last failure (logged once per kind) and
/// the stop in progress. Retrying is the driver's.
#[derive(Default)]
struct Link {
    last_error: Option<String>,
    stopping: Option<Instant>,
    disconnect_sent: bool,
}

impl Link {
    fn connected(&mut self, config: &MqttConfig) {
        if self.last_error.take().is_some() {
            tracing::info!("mqtt: connected to {}:{} again", config.host, config.port);
        }
    }

    fn failed(&mut self, error: MqttError, retry_in: Duration) {
        // Log a kind of failure once, not on every retry.
        let explained = error.to_string();
        if self.last_error.as_deref() != Some(explained.as_str()) {
            tracing::error!(
                "mqtt: {explained}; retrying (next in {:.1} s, then with backoff), messages wait in the outbox",
                retry_in.as_secs_f64()
            );
            self.last_error = Some(explained);
        }
    }
}
