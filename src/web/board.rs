//! What the status page shows, kept as the labels go out: per stream the last result
//! (label, every class's probability, the frame the model saw, the sound's level), an
//! hour of labels as a timeline, and the daemon's own figures read from the stages'
//! counters. Everything here is read by the page's JSON API (`/api/…`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::capture::{StreamState, StreamStats, WindowSender};
use crate::infer::{SceneResult, WorkerStats};
use crate::metrics::ModelInfo;
use crate::publish::PublishStats;
use crate::record::{Recorder, RecordingState};
use crate::support::ByLabel;

/// How much of the past the timeline keeps.
pub const TIMELINE: Duration = Duration::from_secs(3600);
/// A timeline segment ends where labels stop for longer than this (an outage shows).
const SEGMENT_GAP_S: f64 = 5.0;
/// Windows per second are counted over this much of the past.
const RATE_OVER: Duration = Duration::from_secs(10);

/// The latest result of a stream.
struct Last {
    result: SceneResult,
    latency_ms: f64,
    at: Instant,
}

/// A stretch of one label: `[start, end)` in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    /// Index into the model's classes.
    pub class: usize,
}

#[derive(Default)]
struct Card {
    last: Option<Last>,
    timeline: VecDeque<Segment>,
}

/// The daemon's parts the page reports on.
pub struct Sources {
    pub model: ModelInfo,
    pub classes: Vec<String>,
    pub worker: Arc<WorkerStats>,
    pub publish: Arc<PublishStats>,
    pub queue: WindowSender,
    pub recorder: Arc<Recorder>,
}

/// The status page's state, shared by the daemon (which feeds it results and its
/// streams) and the HTTP server.
pub struct Board {
    sources: Sources,
    started: Instant,
    cards: Mutex<HashMap<String, Card>>,
    streams: Mutex<Vec<Arc<StreamStats>>>,
    recent: Mutex<VecDeque<Instant>>,
    /// Whether write actions need the token (told to the page, which asks for it).
    pub token_required: bool,
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Board {
    pub fn new(sources: Sources, token_required: bool) -> Board {
        Board {
            sources,
            started: Instant::now(),
            cards: Mutex::new(HashMap::new()),
            streams: Mutex::new(Vec::new()),
            recent: Mutex::new(VecDeque::new()),
            token_required,
        }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.sources.recorder
    }

    /// The streams now running (after a start or reload).
    pub fn set_streams(&self, streams: Vec<Arc<StreamStats>>) {
        let names: Vec<String> = streams.iter().map(|s| s.name.clone()).collect();
        lock(&self.cards).retain(|name, _| names.contains(name));
        *lock(&self.streams) = streams;
    }

    /// The names of the running streams.
    pub fn stream_names(&self) -> Vec<String> {
        lock(&self.streams).iter().map(|s| s.name.clone()).collect()
    }

    /// A result went out.
    pub fn record(&self, result: &SceneResult) {
        let latency_ms = SystemTime::now()
            .duration_since(result.end)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0;
        let class = crate::support::argmax(&result.probabilities);
        let (start, end) = (unix_s(result.end) - 1.0, unix_s(result.end));
        {
            let mut cards = lock(&self.cards);
            let card = cards.entry(result.stream.to_string()).or_default();
            match card.timeline.back_mut() {
                Some(last) if last.class == class && start - last.end <= SEGMENT_GAP_S => {
                    last.end = end;
                }
                _ => card.timeline.push_back(Segment { start, end, class }),
            }
            let horizon = end - TIMELINE.as_secs_f64();
            while card.timeline.front().is_some_and(|s| s.end < horizon) {
                card.timeline.pop_front();
            }
            card.last = Some(Last {
                result: result.clone(),
                latency_ms,
                at: Instant::now(),
            });
        }
        let mut recent = lock(&self.recent);
        recent.push_back(Instant::now());
        while recent.front().is_some_and(|t| t.elapsed() > RATE_OVER) {
            recent.pop_front();
        }
    }

    /// The frame the model last saw for `stream` (224×224 RGB).
    pub fn frame(&self, stream: &str) -> Option<Arc<[u8]>> {
        lock(&self.cards)
            .get(stream)?
            .last
            .as_ref()?
            .result
            .frame
            .clone()
    }

    /// Every stream's hour of labels.
    pub fn timelines(&self) -> Timelines {
        let cards = lock(&self.cards);
        Timelines {
            classes: self.sources.classes.clone(),
            now: unix_s(SystemTime::now()),
            streams: cards
                .iter()
                .map(|(name, card)| (name.clone(), card.timeline.iter().copied().collect()))
                .collect(),
        }
    }

    /// The whole status: the daemon's figures and every stream's card.
    pub fn status(&self) -> Status {
        let s = &self.sources;
        let recent = {
            let mut recent = lock(&self.recent);
            while recent.front().is_some_and(|t| t.elapsed() > RATE_OVER) {
                recent.pop_front();
            }
            recent.len()
        };
        let uptime = self.started.elapsed().as_secs_f64();
        let daemon = DaemonStatus {
            version: env!("CARGO_PKG_VERSION"),
            model_id: s.model.id.clone(),
            profile: s.model.profile.clone(),
            device: s.model.device.clone(),
            uptime_s: uptime,
            windows_per_s: recent as f64 / RATE_OVER.as_secs_f64().min(uptime.max(1.0)),
            classified: s.worker.classified.load(Ordering::Relaxed),
            queue: QueueStatus {
                depth: s.queue.len(),
                capacity: s.queue.capacity(),
                dropped: s.queue.dropped(),
            },
            mqtt: MqttStatus {
                connected: s.publish.connected.load(Ordering::Relaxed),
                outbox: s.publish.outbox.load(Ordering::Relaxed),
                in_flight: s.publish.in_flight.load(Ordering::Relaxed),
                published: s.publish.published.load(Ordering::Relaxed),
                dropped: s.publish.dropped.load(Ordering::Relaxed),
            },
            token_required: self.token_required,
            dataset: s.recorder.dataset().display().to_string(),
        };
        let mut streams: Vec<StreamStatus> = {
            let cards = lock(&self.cards);
            lock(&self.streams)
                .iter()
                .map(|stats| self.stream_status(stats, cards.get(&stats.name)))
                .collect()
        };
        streams.sort_by(|a, b| a.name.cmp(&b.name));
        Status {
            daemon,
            classes: s.classes.clone(),
            streams,
        }
    }

    fn stream_status(&self, stats: &StreamStats, card: Option<&Card>) -> StreamStatus {
        let read = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let (state, error, retry_in_s) = match stats.state() {
            StreamState::Starting => ("starting", None, None),
            StreamState::Running => ("live", None, None),
            StreamState::Backoff { reason, retry_at } => {
                let wait = retry_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                ("restarting", Some(reason), Some(wait.as_secs_f64()))
            }
            StreamState::Ended => ("ended", stats.last_error(), None),
        };
        let last = card.and_then(|c| c.last.as_ref());
        let classes = &self.sources.classes;
        StreamStatus {
            name: stats.name.clone(),
            state,
            error,
            retry_in_s,
            restarts: read(&stats.restarts),
            windows: read(&stats.windows),
            dropped: read(&stats.dropped),
            faults: read(&stats.faults),
            filled_samples: read(&stats.filled_samples),
            filled_frames: read(&stats.filled_frames),
            label: last.map(|l| l.result.label.clone()),
            confidence: last.map(|l| l.result.confidence),
            probabilities: last
                .map(|l| {
                    serde_json::to_value(ByLabel {
                        labels: classes,
                        values: &l.result.probabilities,
                    })
                    .unwrap_or_default()
                })
                .unwrap_or(serde_json::Value::Null),
            seq: last.map(|l| l.result.seq),
            latency_ms: last.map(|l| l.latency_ms),
            label_age_s: last.map(|l| l.at.elapsed().as_secs_f64()),
            audio_dbfs: last.map(|l| l.result.audio_dbfs),
            frame: last
                .filter(|l| l.result.frame.is_some())
                .map(|l| format!("/api/streams/{}/frame.png?seq={}", stats.name, l.result.seq)),
            recording: self.sources.recorder.state(&stats.name),
        }
    }
}

/// `/api/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub daemon: DaemonStatus,
    pub classes: Vec<String>,
    pub streams: Vec<StreamStatus>,
}

#[derive(Debug, Serialize)]
pub struct DaemonStatus {
    pub version: &'static str,
    pub model_id: String,
    pub profile: String,
    pub device: String,
    pub uptime_s: f64,
    pub windows_per_s: f64,
    pub classified: u64,
    pub queue: QueueStatus,
    pub mqtt: MqttStatus,
    pub token_required: bool,
    pub dataset: String,
}

#[derive(Debug, Serialize)]
pub struct QueueStatus {
    pub depth: usize,
    pub capacity: usize,
    pub dropped: u64,
}

#[derive(Debug, Serialize)]
pub struct MqttStatus {
    pub connected: bool,
    pub outbox: u64,
    pub in_flight: u64,
    pub published: u64,
    pub dropped: u64,
}

/// One stream's card.
#[derive(Debug, Serialize)]
pub struct StreamStatus {
    pub name: String,
    /// `starting`, `live`, `restarting` (see `error`, `retry_in_s`) or `ended`.
    pub state: &'static str,
    pub error: Option<String>,
    pub retry_in_s: Option<f64>,
    pub restarts: u64,
    pub windows: u64,
    pub dropped: u64,
    pub faults: u64,
    pub filled_samples: u64,
    pub filled_frames: u64,
    pub label: Option<String>,
    pub confidence: Option<f32>,
    pub probabilities: serde_json::Value,
    pub seq: Option<u64>,
    pub latency_ms: Option<f64>,
    pub label_age_s: Option<f64>,
    pub audio_dbfs: Option<f32>,
    /// The address of the frame the model last saw.
    pub frame: Option<String>,
    pub recording: RecordingState,
}

/// `/api/timeline`: each stream's segments of the last hour.
#[derive(Debug, Serialize)]
pub struct Timelines {
    pub classes: Vec<String>,
    pub now: f64,
    pub streams: HashMap<String, Vec<Segment>>,
}
