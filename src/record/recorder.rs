//! The daemon's recorder: labelled clips from a running stream, asked for from the
//! status page or over MQTT. It taps the windows the stream already makes (before the
//! inference queue, so a slow model loses none of them) and takes one every 10 s —
//! consecutive, non-overlapping, as `avscene record` does. The tap runs on the streaming
//! thread and never blocks it: a taken window goes to a small queue and one writer
//! thread writes the clips, each complete on disk before the next begins. A window the
//! source stalled through, or one the writer could not keep up with, is skipped and
//! counted, as is the clip a restart of the source cut short; the next clip starts on
//! the restarted source's timeline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{Sender, TrySendError};
use serde::{Deserialize, Serialize};

use super::clip::{ClipError, check_label, check_minutes, clips_in_minutes, gap_in, write_clip};
use crate::features::{SAMPLE_RATE, WINDOW_SECONDS};
use crate::window::Window;

/// Clips waiting for the writer; beyond, a clip is skipped (counted).
const WRITER_QUEUE: usize = 4;

/// A request to the recorder, from the page's API or `<prefix>/<stream>/record/set`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRequest {
    pub stream: String,
    pub action: RecordAction,
}

/// What to do: the JSON body `{"label": "parcel", "minutes": 1}` starts (`"action":
/// "start"` may be said), `{"action": "stop"}` stops.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum RecordAction {
    Start { label: String, minutes: f64 },
    Stop,
}

impl RecordAction {
    /// The action a JSON body asks for; a body without `action` starts.
    pub fn from_json(body: &[u8]) -> Result<RecordAction, String> {
        let mut value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        if let Some(object) = value.as_object_mut() {
            object
                .entry("action")
                .or_insert_with(|| serde_json::Value::from("start"));
        }
        serde_json::from_value(value).map_err(|e| {
            format!(
                "{e}; expected {{\"label\": \"…\", \"minutes\": M}} or {{\"action\": \"stop\"}}"
            )
        })
    }
}

/// Why a request cannot be carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("no stream '{stream}' is running (running: {running})")]
    NoStream { stream: String, running: String },
    /// A bad label or duration.
    #[error("{0}")]
    Invalid(String),
    /// Already recording, or not recording.
    #[error("{0}")]
    Conflict(String),
}

/// Where a stream's recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Never asked to record since the daemon started.
    Idle,
    Recording,
    /// All clips are written.
    Done,
    /// Stopped by a request (or the daemon stopping): what was written is kept.
    Stopped,
    /// A clip could not be written (the error says why).
    Failed,
    /// A request that cannot be carried out (the error says why); what was recording
    /// goes on.
    Refused,
}

/// A stream's recording, as the page and `<prefix>/<stream>/record/state` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingState {
    pub stream: String,
    pub state: Phase,
    pub label: Option<String>,
    /// Clips written so far, of `target`.
    pub clips: usize,
    pub target: usize,
    /// Windows left out: the source stalled through them, or the writer was behind.
    pub skipped: usize,
    /// Where the clips go (`<dataset>/<label>`).
    pub folder: Option<PathBuf>,
    pub started: Option<String>,
    pub error: Option<String>,
}

impl RecordingState {
    /// The answer to a request that cannot be carried out.
    pub fn refused(stream: &str, reason: String) -> RecordingState {
        RecordingState {
            state: Phase::Refused,
            error: Some(reason),
            ..RecordingState::idle(stream)
        }
    }

    fn idle(stream: &str) -> RecordingState {
        RecordingState {
            stream: stream.to_string(),
            state: Phase::Idle,
            label: None,
            clips: 0,
            target: 0,
            skipped: 0,
            folder: None,
            started: None,
            error: None,
        }
    }
}

/// One stream's recording in progress (or finished).
struct Session {
    shown: RecordingState,
    /// Clips handed to the writer (written or about to be).
    taken: usize,
    /// The next clip starts at or after this sample of this timeline.
    next: Option<(u64, u64)>,
}

impl Session {
    /// A recording in progress ends; what was written is kept.
    fn stop(&mut self) {
        if self.shown.state == Phase::Recording {
            self.shown.state = Phase::Stopped;
        }
    }

    /// Whether `window` is the next clip's.
    fn wants(&self, window: &Window) -> bool {
        self.shown.state == Phase::Recording
            && self.taken < self.shown.target
            && match self.next {
                Some((timeline, sample)) => {
                    window.timeline != timeline || window.start_sample >= sample
                }
                None => true,
            }
    }
}

struct Job {
    stream: String,
    label: String,
    window: Window,
}

struct Shared {
    dataset: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    /// Bumped on every change, so the daemon publishes states only when they change.
    version: AtomicU64,
}

impl Shared {
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// The writer's report on one clip.
    fn written(&self, stream: &str, result: Result<PathBuf, ClipError>) {
        let mut sessions = self.sessions();
        let Some(session) = sessions.get_mut(stream) else {
            return;
        };
        match result {
            Ok(path) => {
                session.shown.clips += 1;
                tracing::info!(
                    "record '{stream}': clip {}/{}: {}",
                    session.shown.clips,
                    session.shown.target,
                    path.display()
                );
                if session.shown.clips >= session.shown.target
                    && session.shown.state == Phase::Recording
                {
                    session.shown.state = Phase::Done;
                    tracing::info!("record '{stream}': done");
                }
            }
            Err(error) => {
                tracing::error!("record '{stream}': {error}; recording stopped");
                session.shown.state = Phase::Failed;
                session.shown.error = Some(error.to_string());
            }
        }
        self.changed();
    }
}

/// The daemon's recorder, shared by the streams' tap, the page and the MQTT commands.
pub struct Recorder {
    shared: Arc<Shared>,
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    /// A recorder writing into `dataset` (created with the first clip).
    pub fn start(dataset: PathBuf) -> std::io::Result<Recorder> {
        let shared = Arc::new(Shared {
            dataset,
            sessions: Mutex::new(HashMap::new()),
            version: AtomicU64::new(0),
        });
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(WRITER_QUEUE);
        let writing = shared.clone();
        let writer = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                for job in queue.iter() {
                    let result = write_clip(&writing.dataset, &job.label, &job.window);
                    writing.written(&job.stream, result);
                }
            })?;
        Ok(Recorder {
            shared,
            jobs: Mutex::new(Some(jobs)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The dataset folder recordings go to.
    pub fn dataset(&self) -> &std::path::Path {
        &self.shared.dataset
    }

    /// Carry out a request for one of `streams` (the running ones); the new state, or
    /// why it cannot be.
    pub fn request(
        &self,
        request: &RecordRequest,
        streams: &[String],
    ) -> Result<RecordingState, RequestError> {
        let stream = &request.stream;
        if !streams.contains(stream) {
            return Err(RequestError::NoStream {
                stream: stream.clone(),
                running: streams.join(", "),
            });
        }
        let mut sessions = self.shared.sessions();
        let current = sessions.get(stream).map(|s| &s.shown);
        let state = match &request.action {
            RecordAction::Start { label, minutes } => {
                let invalid = |e: ClipError| RequestError::Invalid(e.to_string());
                check_label(label).map_err(invalid)?;
                check_minutes(*minutes).map_err(invalid)?;
                if let Some(now) = current.filter(|s| s.state == Phase::Recording) {
                    return Err(RequestError::Conflict(format!(
                        "stream '{stream}' is already recording '{}' ({} of {} clips); stop it first",
                        now.label.as_deref().unwrap_or(""),
                        now.clips,
                        now.target
                    )));
                }
                let target = clips_in_minutes(*minutes);
                let shown = RecordingState {
                    stream: stream.clone(),
                    state: Phase::Recording,
                    label: Some(label.clone()),
                    clips: 0,
                    target,
                    skipped: 0,
                    folder: Some(self.shared.dataset.join(label)),
                    started: Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string()),
                    error: None,
                };
                tracing::info!(
                    "record '{stream}': {target} clip(s) of 10 s labelled '{label}' into {}",
                    self.shared.dataset.join(label).display()
                );
                sessions.insert(
                    stream.clone(),
                    Session {
                        shown: shown.clone(),
                        taken: 0,
                        next: None,
                    },
                );
                shown
            }
            RecordAction::Stop => {
                let session = sessions
                    .get_mut(stream)
                    .filter(|s| s.shown.state == Phase::Recording)
                    .ok_or_else(|| {
                        RequestError::Conflict(format!("stream '{stream}' is not recording"))
                    })?;
                session.shown.state = Phase::Stopped;
                tracing::info!(
                    "record '{stream}': stopped after {} clip(s)",
                    session.shown.clips
                );
                session.shown.clone()
            }
        };
        self.shared.changed();
        Ok(state)
    }

    /// A window of a running stream (called on its streaming thread; never blocks).
    pub fn tap(&self, window: &Window) {
        let mut sessions = self.shared.sessions();
        let Some(session) = sessions.get_mut(&*window.stream) else {
            return;
        };
        if !session.wants(window) {
            return;
        }
        // The source restarted before the next clip was complete: that clip is lost.
        if session
            .next
            .is_some_and(|(timeline, _)| timeline != window.timeline)
        {
            session.shown.skipped += 1;
            tracing::warn!(
                "record '{}': left out a clip: the source restarted",
                window.stream
            );
        }
        // Whatever happens to this window, the next clip starts after it.
        let clip_samples = (WINDOW_SECONDS * SAMPLE_RATE as f64) as u64;
        session.next = Some((window.timeline, window.start_sample + clip_samples));
        if let Some(gap) = gap_in(window) {
            session.shown.skipped += 1;
            tracing::warn!("record '{}': left out a window: {gap}", window.stream);
            self.shared.changed();
            return;
        }
        let Some(label) = session.shown.label.clone() else {
            return;
        };
        let job = Job {
            stream: window.stream.to_string(),
            label,
            window: window.clone(),
        };
        let sent = match self.jobs.lock().ok().as_ref().and_then(|j| j.as_ref()) {
            Some(jobs) => jobs.try_send(job),
            None => Err(TrySendError::Disconnected(job)),
        };
        match sent {
            Ok(()) => session.taken += 1,
            Err(_) => {
                session.shown.skipped += 1;
                tracing::warn!(
                    "record '{}': left out a window: the disk is behind",
                    window.stream
                );
            }
        }
        self.shared.changed();
    }

    /// Every stream's recording that was asked for, by stream name.
    pub fn states(&self) -> Vec<RecordingState> {
        let mut states: Vec<RecordingState> = self
            .shared
            .sessions()
            .values()
            .map(|s| s.shown.clone())
            .collect();
        states.sort_by(|a, b| a.stream.cmp(&b.stream));
        states
    }

    /// A stream's recording (idle when none was asked for).
    pub fn state(&self, stream: &str) -> RecordingState {
        self.shared
            .sessions()
            .get(stream)
            .map_or_else(|| RecordingState::idle(stream), |s| s.shown.clone())
    }

    /// A number that changes whenever a state does.
    pub fn version(&self) -> u64 {
        self.shared.version.load(Ordering::Relaxed)
    }

    /// A removed stream's recording ends (stopped; what was written is kept).
    pub fn forget(&self, stream: &str) {
        if let Some(session) = self.shared.sessions().get_mut(stream) {
            session.stop();
        }
        self.shared.changed();
    }

    /// Stop recording: the clips already taken are written, then the writer ends.
    pub fn stop(&self) {
        self.shared.sessions().values_mut().for_each(Session::stop);
        self.shared.changed();
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}
