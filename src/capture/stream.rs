//! Running one stream: its GStreamer pipeline feeding the window assembler from the
//! appsink callbacks, and a supervisor thread that watches the bus, detects stalls,
//! restarts failed pipelines with exponential backoff and jitter, and ends the stream
//! cleanly at the end of a file. The streaming threads only copy samples and hand
//! finished windows to a queue that never blocks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::config::{CaptureConfig, StreamSpec};
use super::handoff::WindowSender;
use super::pipeline::{AUDIO_SINK, VIDEO_SINK};
use crate::features::IMAGE_BYTES;
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
    /// Failed; the next attempt is after the backoff.
    Backoff {
        reason: String,
    },
    /// The file ended (not looping) or the stream was stopped.
    Ended,
}

/// Counters of one stream, shared with whoever reports on it.
#[derive(Debug)]
pub struct StreamStats {
    pub name: String,
    pub windows: AtomicU64,
    /// Windows this stream queued that were dropped because the queue was full.
    pub dropped: AtomicU64,
    pub restarts: AtomicU64,
    /// Warnings and suspicious input (digital silence) reported as faults.
    pub faults: AtomicU64,
    pub filled_samples: AtomicU64,
    pub filled_frames: AtomicU64,
    pub state: Mutex<StreamState>,
    pub last_error: Mutex<Option<String>>,
}

impl StreamStats {
    fn new(name: &str) -> StreamStats {
        StreamStats {
            name: name.to_string(),
            windows: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
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

    fn set_state(&self, state: StreamState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
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
    let stats = Arc::new(StreamStats::new(&spec.name));
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
fn hand_off(stats: &StreamStats, out: &WindowSender, w: Window) {
    stats.windows.fetch_add(1, Ordering::Relaxed);
    stats
        .filled_samples
        .fetch_add(w.filled_samples as u64, Ordering::Relaxed);
    stats
        .filled_frames
        .fetch_add(w.filled_frames as u64, Ordering::Relaxed);
    match out.send(w) {
        Ok(dropped) => {
            stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        Err(_) => tracing::debug!("stream '{}': nobody receives windows", stats.name),
    }
}

/// How one run of the pipeline ended.
enum Outcome {
    Stopped,
    EndOfStream,
    Failed(String),
}

/// State shared by one run's appsink callbacks.
struct RunShared {
    assembler: Mutex<Assembler>,
    started: Instant,
    /// Milliseconds since `started` of the last audio / video buffer.
    last_audio_ms: AtomicU64,
    last_video_ms: AtomicU64,
    /// Running time (ns, with `offset_ns`) at the end of the latest audio buffer.
    audio_end_ns: AtomicU64,
    offset_ns: u64,
    silent_windows: AtomicU64,
    stats: Arc<StreamStats>,
    out: WindowSender,
}

impl RunShared {
    fn deliver(&self, windows: Vec<Window>) {
        for w in windows {
            self.watch_silence(&w);
            hand_off(&self.stats, &self.out, w);
        }
    }

    /// Digital silence (exact zeros that were not gap-filling) for several windows in a
    /// row is what a source that fell back to a dummy device delivers: report it once.
    fn watch_silence(&self, w: &Window) {
        if w.filled_samples == 0 && w.audio.iter().all(|&s| s == 0.0) {
            if self.silent_windows.fetch_add(1, Ordering::Relaxed) + 1 == 3 {
                self.stats.faults.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "stream '{}': the audio is digital silence (3 windows of exact zeros): a muted microphone, \
                     or a source that fell back to a dummy device (autoaudiosrc without a sound card)?",
                    self.stats.name
                );
            }
        } else {
            self.silent_windows.store(0, Ordering::Relaxed);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// The running time of a sample's buffer, in nanoseconds.
fn running_time_ns(sample: &gst::Sample) -> Option<u64> {
    let pts = sample.buffer()?.pts()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    segment.to_running_time(pts).map(|t| t.nseconds())
}

/// Pull the next sample: its running time (with the run's offset) and its data.
fn pull(
    shared: &RunShared,
    sink: &gst_app::AppSink,
) -> Result<(u64, gst::MappedBuffer<gst::buffer::Readable>), gst::FlowError> {
    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
    let pts = running_time_ns(&sample).ok_or(gst::FlowError::Error)? + shared.offset_ns;
    let buffer = sample.buffer_owned().ok_or(gst::FlowError::Error)?;
    let map = buffer
        .into_mapped_buffer_readable()
        .map_err(|_| gst::FlowError::Error)?;
    Ok((pts, map))
}

impl RunShared {
    /// Feed the assembler and hand on what it completed.
    fn assemble(
        &self,
        push: impl FnOnce(&mut Assembler) -> Vec<Window>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let windows = match self.assembler.lock() {
            Ok(mut a) => push(&mut a),
            Err(_) => return Err(gst::FlowError::Error),
        };
        self.deliver(windows);
        Ok(gst::FlowSuccess::Ok)
    }
}

fn on_audio(
    shared: &RunShared,
    sink: &gst_app::AppSink,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let (pts, map) = pull(shared, sink)?;
    let samples: Vec<f32> = map
        .as_slice()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let end = pts + samples.len() as u64 * 1_000_000_000 / crate::features::SAMPLE_RATE;
    shared.audio_end_ns.fetch_max(end, Ordering::Relaxed);
    shared
        .last_audio_ms
        .store(shared.elapsed_ms(), Ordering::Relaxed);
    shared.assemble(|a| a.push_audio(pts, &samples))
}

fn on_video(
    shared: &RunShared,
    sink: &gst_app::AppSink,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let (pts, map) = pull(shared, sink)?;
    // RGB rows of 224 pixels are 672 bytes, already 4-byte aligned: no stride padding.
    if map.size() != IMAGE_BYTES {
        gst::element_error!(
            sink,
            gst::StreamError::Format,
            (
                "frame of {} bytes, expected {} (224×224 RGB)",
                map.size(),
                IMAGE_BYTES
            )
        );
        return Err(gst::FlowError::Error);
    }
    let frame: Arc<[u8]> = Arc::from(map.as_slice());
    shared
        .last_video_ms
        .store(shared.elapsed_ms(), Ordering::Relaxed);
    shared.assemble(|a| a.push_frame(pts, frame))
}

/// The element a bus message came from, as its factory name (`v4l2src`) where it has
/// one, else its object name.
fn element_name(src: Option<&gst::Object>) -> String {
    let Some(src) = src else {
        return "pipeline".into();
    };
    src.downcast_ref::<gst::Element>()
        .and_then(|e| e.factory())
        .map(|f| f.name().to_string())
        .unwrap_or_else(|| src.name().to_string())
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
        let mut assembler = self.assembler();
        let mut offset_ns = 0;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.stats.set_state(StreamState::Starting);
            let started = Instant::now();
            let (outcome, returned, end_ns) = self.run_once(assembler, offset_ns);
            match outcome {
                Outcome::Stopped => break,
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
                    tracing::info!("stream '{name}': end of stream");
                    break;
                }
                Outcome::Failed(reason) => {
                    tracing::error!("stream '{name}': {reason}");
                    if let Ok(mut e) = self.stats.last_error.lock() {
                        *e = Some(reason.clone());
                    }
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff.reset();
                    }
                    let delay = backoff.next();
                    self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    self.stats.set_state(StreamState::Backoff { reason });
                    tracing::info!(
                        "stream '{name}': restarting in {:.1} s",
                        delay.as_secs_f64()
                    );
                    if !self.sleep(delay) {
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

    /// A fresh assembler. A live source's late video is filled in after a second, so a
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
        Assembler::new(&self.spec.name, &self.window).with_video_wait(wait)
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

    /// Build and play the pipeline until it fails, ends or is stopped. Returns the
    /// assembler (to continue a looping file) and the running time reached.
    fn run_once(&self, assembler: Assembler, offset_ns: u64) -> (Outcome, Assembler, u64) {
        let shared = Arc::new(RunShared {
            assembler: Mutex::new(assembler),
            started: Instant::now(),
            last_audio_ms: AtomicU64::new(0),
            last_video_ms: AtomicU64::new(0),
            audio_end_ns: AtomicU64::new(offset_ns),
            offset_ns,
            silent_windows: AtomicU64::new(0),
            stats: self.stats.clone(),
            out: self.out.clone(),
        });
        let outcome = match self.build(&shared) {
            Ok(pipeline) => {
                let outcome = self.play(&pipeline, &shared);
                let _ = pipeline.set_state(gst::State::Null);
                outcome
            }
            Err(reason) => Outcome::Failed(reason),
        };
        let end_ns = shared.audio_end_ns.load(Ordering::Relaxed);
        // The callbacks are gone with the pipeline; take the assembler back.
        let assembler = match Arc::try_unwrap(shared) {
            Ok(shared) => shared
                .assembler
                .into_inner()
                .unwrap_or_else(|p| p.into_inner()),
            Err(_) => self.assembler(),
        };
        (outcome, assembler, end_ns)
    }

    fn build(&self, shared: &Arc<RunShared>) -> Result<gst::Pipeline, String> {
        gst::init().map_err(|e| format!("GStreamer cannot start: {e}"))?;
        let element =
            gst::parse::launch_full(&self.spec.launch, None, gst::ParseFlags::FATAL_ERRORS)
                .map_err(|e| {
                    format!(
                        "invalid pipeline ({}): {e}",
                        self.spec.pipeline_file.display()
                    )
                })?;
        let pipeline = element.downcast::<gst::Pipeline>().map_err(|_| {
            format!(
                "{}: the description is not a pipeline",
                self.spec.pipeline_file.display()
            )
        })?;
        let sink = |name: &str| {
            pipeline
                .by_name(name)
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .ok_or_else(|| format!("the pipeline has no '{name}' appsink"))
        };
        let audio = sink(AUDIO_SINK)?;
        let video = sink(VIDEO_SINK)?;
        // The callbacks hold weak references: the pipeline, not them, owns the run.
        let weak = Arc::downgrade(shared);
        audio.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| match weak.upgrade() {
                    Some(shared) => on_audio(&shared, sink),
                    None => Err(gst::FlowError::Flushing),
                })
                .build(),
        );
        let weak = Arc::downgrade(shared);
        let weak_eos = weak.clone();
        video.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| match weak.upgrade() {
                    Some(shared) => on_video(&shared, sink),
                    None => Err(gst::FlowError::Flushing),
                })
                .eos(move |_| {
                    if let Some(shared) = weak_eos.upgrade() {
                        let _ = shared.assemble(Assembler::end_of_video);
                    }
                })
                .build(),
        );
        Ok(pipeline)
    }

    fn play(&self, pipeline: &gst::Pipeline, shared: &RunShared) -> Outcome {
        let Some(bus) = pipeline.bus() else {
            return Outcome::Failed("the pipeline has no bus".into());
        };
        if pipeline.set_state(gst::State::Playing).is_err() {
            // The reason is on the bus; the first error is the informative one.
            let reason = bus
                .timed_pop_filtered(
                    gst::ClockTime::from_mseconds(500),
                    &[gst::MessageType::Error],
                )
                .and_then(|msg| match msg.view() {
                    gst::MessageView::Error(err) => {
                        Some(format!("{}: {}", element_name(msg.src()), err.error()))
                    }
                    _ => None,
                })
                .unwrap_or_else(|| "the pipeline refused to start".into());
            return Outcome::Failed(reason);
        }
        self.stats.set_state(StreamState::Running);
        let stall_ms = (self.capture.stall_timeout_s * 1000.0) as u64;
        let types = [
            gst::MessageType::Error,
            gst::MessageType::Eos,
            gst::MessageType::Warning,
        ];
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Outcome::Stopped;
            }
            if let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &types) {
                match msg.view() {
                    gst::MessageView::Error(err) => {
                        tracing::debug!("stream '{}': {:?}", self.spec.name, err.debug());
                        return Outcome::Failed(format!(
                            "{}: {}",
                            element_name(msg.src()),
                            err.error()
                        ));
                    }
                    gst::MessageView::Eos(_) => return Outcome::EndOfStream,
                    gst::MessageView::Warning(w) => {
                        self.stats.faults.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "stream '{}': {}: {}",
                            self.spec.name,
                            element_name(msg.src()),
                            w.error()
                        );
                    }
                    _ => {}
                }
            }
            let now = shared.elapsed_ms();
            for (what, last) in [
                ("audio", &shared.last_audio_ms),
                ("video", &shared.last_video_ms),
            ] {
                let silent_for = now.saturating_sub(last.load(Ordering::Relaxed));
                if silent_for > stall_ms {
                    return Outcome::Failed(format!(
                        "stalled: no {what} for {:.1} s (capture.stall_timeout_s = {})",
                        silent_for as f64 / 1000.0,
                        self.capture.stall_timeout_s
                    ));
                }
            }
        }
    }
}
