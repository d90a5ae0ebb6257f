//! Running one stream under supervision: a thread that plays the pipeline (`run.rs`),
//! restarts it after a failure or stall with exponential backoff and jitter, continues a
//! looping file's timeline, and ends the stream cleanly at the end of a file. What the
//! stream did is counted in its [`StreamStats`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::{CaptureConfig, StreamSpec};
use super::decode;
use super::error::{CaptureError, source_uri};
use super::handoff::WindowSender;
use super::run::{Outcome, Run};
use crate::window::{Assembler, Window, WindowConfig};

/// How far a file's audio may decode ahead of its video before missing frames are
/// filled in: never reached by a file whose tracks both play to the end (the decoders'
/// queues keep them within a few seconds); it bounds memory (≈ 23 MB of audio) for one
/// whose video stops without ending.
const FILE_VIDEO_WAIT_S: f64 = 120.0;

/// Where a stream is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamState {
    Starting,
    Running,
    /// Failed; the next attempt is after the backoff, at `retry_at`.
    Backoff {
        reason: String,
        retry_at: std::time::SystemTime,
    },
    /// The file ended (not looping) or the stream was stopped.
    Ended,
}

/// Counters of one stream, shared with whoever reports on it.
#[derive(Debug)]
pub struct StreamStats {
    pub name: String,
    pub windows: AtomicU64,
    /// Windows of this stream dropped from the full queue (the queue's count for its
    /// lane: a window is counted against the stream it belonged to).
    pub dropped: Arc<AtomicU64>,
    pub restarts: AtomicU64,
    /// Warnings and suspicious input (digital silence) reported as faults.
    pub faults: AtomicU64,
    pub filled_samples: AtomicU64,
    pub filled_frames: AtomicU64,
    pub state: Mutex<StreamState>,
    last_error: Mutex<Option<CaptureError>>,
}

impl StreamStats {
    fn new(name: &str, dropped: Arc<AtomicU64>) -> StreamStats {
        StreamStats {
            name: name.to_string(),
            windows: AtomicU64::new(0),
            dropped,
            restarts: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            filled_samples: AtomicU64::new(0),
            filled_frames: AtomicU64::new(0),
            state: Mutex::new(StreamState::Starting),
            last_error: Mutex::new(None),
        }
    }

    pub fn state(&self) -> StreamState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(StreamState::Starting)
    }

    pub(super) fn set_state(&self, state: StreamState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    /// The latest failure, as it was logged.
    pub fn last_error(&self) -> Option<String> {
        self.last_failure().map(|e| e.to_string())
    }

    /// The latest failure.
    pub fn last_failure(&self) -> Option<CaptureError> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_failure(&self, error: CaptureError) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }

    fn failed(&self, error: &CaptureError, retry_in: Duration) {
        self.set_failure(error.clone());
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.set_state(StreamState::Backoff {
            reason: error.to_string(),
            retry_at: std::time::SystemTime::now() + retry_in,
        });
    }
}

/// A running stream; dropping it stops the stream and waits for its thread.
pub struct StreamHandle {
    pub stats: Arc<StreamStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StreamHandle {
    /// Whether the supervisor has finished (the stream ended).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stop the pipeline and wait for the supervisor.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Start a stream under supervision; its windows go to `out`.
pub fn spawn(
    spec: StreamSpec,
    capture: CaptureConfig,
    window: WindowConfig,
    out: WindowSender,
) -> StreamHandle {
    let stats = Arc::new(StreamStats::new(&spec.name, out.dropped_of(&spec.name)));
    let stop = Arc::new(AtomicBool::new(false));
    let supervisor = Supervisor {
        spec,
        capture,
        window,
        out,
        stats: stats.clone(),
        stop: stop.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("stream-{}", supervisor.spec.name))
        .spawn(move || supervisor.run())
        .ok();
    if thread.is_none() {
        stats.set_state(StreamState::Ended);
        tracing::error!(
            "stream '{}': cannot start its supervisor thread",
            stats.name
        );
    }
    StreamHandle {
        stats,
        stop,
        thread,
    }
}

/// Count a finished window and queue it for the model.
pub(super) fn hand_off(stats: &StreamStats, out: &WindowSender, w: Window) {
    stats.windows.fetch_add(1, Ordering::Relaxed);
    stats
        .filled_samples
        .fetch_add(w.filled_samples as u64, Ordering::Relaxed);
    stats
        .filled_frames
        .fetch_add(w.filled_frames as u64, Ordering::Relaxed);
    if out.send(w).is_err() {
        tracing::debug!("stream '{}': nobody receives windows", stats.name);
    }
}

/// Exponential backoff with ±20 % jitter, so streams that failed together do not retry
/// in lockstep.
struct Backoff {
    next_s: f64,
    initial_s: f64,
    max_s: f64,
    seed: u64,
}

impl Backoff {
    fn new(config: &CaptureConfig, name: &str) -> Backoff {
        let seed = name.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        }) ^ Instant::now().elapsed().as_nanos() as u64
            ^ std::process::id() as u64;
        Backoff {
            next_s: config.restart_initial_s,
            initial_s: config.restart_initial_s,
            max_s: config.restart_max_s,
            seed: seed | 1,
        }
    }

    fn next(&mut self) -> Duration {
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.8 + 0.4 * (self.seed % 1000) as f64 / 1000.0;
        let delay = self.next_s * jitter;
        self.next_s = (self.next_s * 2.0).min(self.max_s);
        Duration::from_secs_f64(delay)
    }

    fn reset(&mut self) {
        self.next_s = self.initial_s;
    }
}

/// A source's failures as the log tells them: a new one in full, the same one again as a
/// count (the 10th, 100th, … time in full again), so a camera unplugged overnight does
/// not fill the journal with the same line.
#[derive(Default)]
struct FailureLog {
    last: Option<CaptureError>,
    times: u64,
}

impl FailureLog {
    /// Count `error`; how many times in a row it has now happened.
    fn count(&mut self, error: &CaptureError) -> u64 {
        match &self.last {
            Some(last) if last.same_failure(error) => self.times += 1,
            _ => {
                self.last = Some(error.clone());
                self.times = 1;
            }
        }
        self.times
    }

    fn reset(&mut self) {
        *self = FailureLog::default();
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n % 10 == 0 {
        n /= 10;
    }
    n == 1
}

struct Supervisor {
    spec: StreamSpec,
    capture: CaptureConfig,
    window: WindowConfig,
    out: WindowSender,
    stats: Arc<StreamStats>,
    stop: Arc<AtomicBool>,
}

impl Supervisor {
    fn run(self) {
        let name = self.spec.name.clone();
        let mut backoff = Backoff::new(&self.capture, &name);
        let mut failures = FailureLog::default();
        if let Some(error) = self.missing_track() {
            tracing::error!("stream '{name}': {error}");
            self.stats.set_failure(error);
            self.stats.set_state(StreamState::Ended);
            return;
        }
        let mut assembler = self.assembler();
        let mut offset_ns = 0;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.stats.set_state(StreamState::Starting);
            let started = Instant::now();
            let run = Run {
                spec: &self.spec,
                capture: &self.capture,
                stats: &self.stats,
                out: &self.out,
                stop: &self.stop,
            };
            let (outcome, returned, end_ns) = run.once(assembler, offset_ns);
            let returned = returned.unwrap_or_else(|| self.assembler());
            match outcome {
                Outcome::Stopped => break,
                Outcome::EndOfStream if self.spec.live => {
                    // A camera or microphone does not end: one that does has failed.
                    if !self.restart(CaptureError::Ended, &mut backoff, &mut failures, started) {
                        break;
                    }
                    assembler = self.assembler();
                    offset_ns = 0;
                }
                Outcome::EndOfStream if self.spec.looping => {
                    tracing::info!("stream '{name}': end of file, looping");
                    // Continue the same timeline: the next run's timestamps follow on.
                    assembler = returned;
                    offset_ns = end_ns;
                }
                Outcome::EndOfStream => {
                    let mut assembler = returned;
                    for w in assembler.finish() {
                        hand_off(&self.stats, &self.out, w);
                    }
                    if self.spec.quiet {
                        tracing::debug!("stream '{name}': end of stream");
                    } else {
                        tracing::info!("stream '{name}': end of stream");
                    }
                    break;
                }
                Outcome::Failed(error) => {
                    if !self.restart(error, &mut backoff, &mut failures, started) {
                        break;
                    }
                    // After a failure the timeline starts afresh.
                    assembler = self.assembler();
                    offset_ns = 0;
                }
            }
        }
        self.stats.set_state(StreamState::Ended);
    }

    /// Why a media file can never give a window (it lacks sound or picture), read from
    /// its headers: restarting it would only stall again, forever.
    fn missing_track(&self) -> Option<CaptureError> {
        // A camera, separate sound and picture files, or a file a command decodes, which
        // checked its tracks before (`decode_file`, the dataset survey).
        if self.spec.live || self.spec.quiet || self.spec.launch.matches("uri=").count() != 1 {
            return None;
        }
        let uri = source_uri(&self.spec.launch).filter(|u| u.starts_with("file://"))?;
        let discoverer = decode::discoverer().ok()?;
        // A file that cannot be read at all fails in the pipeline, with GStreamer's reason.
        let tracks = decode::tracks(&discoverer, &uri).ok()?;
        let missing = tracks.missing()?;
        Some(CaptureError::MissingTrack { uri, missing })
    }

    /// Log a failure (a repeat as a count), count it and wait out the backoff; false when
    /// stopped meanwhile.
    fn restart(
        &self,
        error: CaptureError,
        backoff: &mut Backoff,
        failures: &mut FailureLog,
        started: Instant,
    ) -> bool {
        let name = &self.spec.name;
        if started.elapsed() > Duration::from_secs(30) {
            // It ran a while: this is a new failure, not the last one again.
            backoff.reset();
            failures.reset();
        }
        let times = failures.count(&error);
        let delay = backoff.next();
        let retry = format!("restarting in {:.1} s", delay.as_secs_f64());
        if times == 1 {
            tracing::error!("stream '{name}': {error}");
            tracing::info!("stream '{name}': {retry}");
        } else if is_power_of_ten(times) {
            tracing::warn!("stream '{name}': failed {times} times in a row: {error}; {retry}");
        } else {
            tracing::debug!("stream '{name}': failed again ({times}): {error}; {retry}");
        }
        if let CaptureError::Element {
            debug: Some(details),
            ..
        }
        | CaptureError::Source {
            debug: Some(details),
            ..
        } = &error
        {
            tracing::debug!("stream '{name}': {details}");
        }
        self.stats.failed(&error, delay);
        self.sleep(delay)
    }

    /// A fresh assembler, numbering its windows on from the stream's last (`seq` stays
    /// monotonic across restarts). A live source's late video is filled in after a second, so a
    /// frozen camera cannot hold up the labels. A file's audio and video decode at their
    /// own pace (a 1280 × 720 picture far slower than its sound): it waits for every
    /// frame or the video's end, so the same file gives the same windows on every run;
    /// [`FILE_VIDEO_WAIT_S`] only bounds the audio held meanwhile.
    fn assembler(&self) -> Assembler {
        let wait = if self.spec.live {
            1.0
        } else {
            FILE_VIDEO_WAIT_S
        };
        let next_seq = self.stats.windows.load(Ordering::Relaxed);
        Assembler::new(&self.spec.name, &self.window)
            .with_video_wait(wait)
            .with_first_seq(next_seq)
    }

    /// Sleep unless asked to stop; false when stopped.
    fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(
                Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
            );
        }
        !self.stop.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_failure_again_is_counted_and_a_new_one_starts_over() {
        let stall = |seconds| CaptureError::Stalled {
            what: "audio",
            seconds,
            limit: 10.0,
        };
        let mut log = FailureLog::default();
        assert_eq!(log.count(&stall(10.2)), 1);
        assert_eq!(
            log.count(&stall(11.7)),
            2,
            "a stall is a stall, however long"
        );
        assert_eq!(log.count(&CaptureError::Ended), 1);
        assert_eq!(log.count(&CaptureError::Ended), 2);
        log.reset();
        assert_eq!(log.count(&CaptureError::Ended), 1);
        let shown: Vec<u64> = (1..=1000).filter(|&n| is_power_of_ten(n)).collect();
        assert_eq!(shown, [1, 10, 100, 1000]);
    }
}
