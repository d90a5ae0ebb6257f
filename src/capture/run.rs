//! One run of a stream's pipeline: built from its launch description, the appsink
//! callbacks (GStreamer's streaming threads) feed the window assembler and hand finished
//! windows to the queue that never blocks; the bus is watched for errors, the end of
//! stream and stalls. The supervisor (`stream.rs`) decides what comes next.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::config::{CaptureConfig, StreamSpec};
use super::error::{CaptureError, SourceProblem, source_uri};
use super::handoff::WindowSender;
use super::pipeline::{AUDIO_SINK, VIDEO_SINK};
use super::stream::{StreamState, StreamStats, hand_off};
use crate::features::IMAGE_BYTES;
use crate::window::{Assembler, Window};

/// What one run needs to know.
pub(super) struct Run<'a> {
    pub spec: &'a StreamSpec,
    pub capture: &'a CaptureConfig,
    pub stats: &'a Arc<StreamStats>,
    pub out: &'a WindowSender,
    pub stop: &'a AtomicBool,
}

/// How one run of the pipeline ended.
pub(super) enum Outcome {
    Stopped,
    EndOfStream,
    Failed(CaptureError),
}

/// State shared by one run's appsink callbacks.
struct RunShared {
    assembler: Mutex<Assembler>,
    started: Instant,
    /// Milliseconds since `started` of the last audio / video buffer.
    last_audio_ms: AtomicU64,
    last_video_ms: AtomicU64,
    /// Audio and video have each delivered a buffer in this run.
    audio_flowing: AtomicBool,
    video_flowing: AtomicBool,
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
        let Ok(mut assembler) = self.assembler.lock() else {
            return Err(gst::FlowError::Error);
        };
        let windows = push(&mut assembler);
        // Handed on under the lock (the hand-off never blocks): the audio and video
        // threads both complete windows, and must not overtake each other with them.
        self.deliver(windows);
        drop(assembler);
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
    shared.audio_flowing.store(true, Ordering::Relaxed);
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
    shared.video_flowing.store(true, Ordering::Relaxed);
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

impl Run<'_> {
    /// Build and play the pipeline until it fails, ends or is stopped. Returns the
    /// assembler (to continue a looping file; `None` if a callback still held it) and the
    /// running time reached.
    pub(super) fn once(
        &self,
        assembler: Assembler,
        offset_ns: u64,
    ) -> (Outcome, Option<Assembler>, u64) {
        let shared = Arc::new(RunShared {
            assembler: Mutex::new(assembler),
            started: Instant::now(),
            last_audio_ms: AtomicU64::new(0),
            last_video_ms: AtomicU64::new(0),
            audio_flowing: AtomicBool::new(false),
            video_flowing: AtomicBool::new(false),
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
            Err(error) => Outcome::Failed(error),
        };
        let end_ns = shared.audio_end_ns.load(Ordering::Relaxed);
        // The callbacks are gone with the pipeline; take the assembler back.
        let assembler = Arc::try_unwrap(shared).ok().map(|shared| {
            shared
                .assembler
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
        });
        (outcome, assembler, end_ns)
    }

    fn build(&self, shared: &Arc<RunShared>) -> Result<gst::Pipeline, CaptureError> {
        gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
        let launch_error = |message: String| CaptureError::Launch {
            file: self.spec.pipeline_file.clone(),
            message,
        };
        let element =
            gst::parse::launch_full(&self.spec.launch, None, gst::ParseFlags::FATAL_ERRORS)
                .map_err(|e| launch_error(e.to_string()))?;
        let pipeline = element
            .downcast::<gst::Pipeline>()
            .map_err(|_| launch_error("the description is not a pipeline".into()))?;
        let sink = |name: &'static str| {
            pipeline
                .by_name(name)
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .ok_or(CaptureError::MissingSink(name))
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

    /// Play until the pipeline fails, ends, stalls or is stopped.
    fn play(&self, pipeline: &gst::Pipeline, shared: &RunShared) -> Outcome {
        let Some(bus) = pipeline.bus() else {
            return Outcome::Failed(CaptureError::Refused);
        };
        if pipeline.set_state(gst::State::Playing).is_err() {
            // The reason is on the bus; the first error is the informative one.
            let error = bus
                .timed_pop_filtered(
                    gst::ClockTime::from_mseconds(500),
                    &[gst::MessageType::Error],
                )
                .and_then(|msg| element_error(&msg))
                .unwrap_or(CaptureError::Refused);
            return Outcome::Failed(error);
        }
        // Running once both branches deliver, not when the pipeline says it plays: an
        // attempt hanging against a frozen camera is still starting.
        let mut running = false;
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
                    _ => {
                        if let Some(error) = element_error(&msg) {
                            return Outcome::Failed(self.name_source(error, shared));
                        }
                    }
                }
            }
            if !running
                && shared.audio_flowing.load(Ordering::Relaxed)
                && shared.video_flowing.load(Ordering::Relaxed)
            {
                running = true;
                self.stats.set_state(StreamState::Running);
            }
            if let Some(stall) = self.stalled(shared) {
                return Outcome::Failed(stall);
            }
        }
    }

    /// An element's error, for a source with a URI: which URI, and whether it was not
    /// found, never connected or was lost after it had delivered.
    fn name_source(&self, error: CaptureError, shared: &RunShared) -> CaptureError {
        let (
            Some(uri),
            CaptureError::Element {
                element,
                message,
                debug,
                kind,
            },
        ) = (source_uri(&self.spec.launch), &error)
        else {
            return error;
        };
        let delivered = shared.audio_flowing.load(Ordering::Relaxed)
            || shared.video_flowing.load(Ordering::Relaxed);
        let problem = match kind {
            Some(gst::ResourceError::NotFound) => SourceProblem::NotFound,
            _ if delivered => SourceProblem::Lost,
            Some(gst::ResourceError::OpenRead | gst::ResourceError::OpenReadWrite) => {
                SourceProblem::CannotConnect
            }
            _ => SourceProblem::Failed,
        };
        CaptureError::Source {
            element: element.clone(),
            uri,
            problem,
            message: message.clone(),
            debug: debug.clone(),
        }
    }

    /// A branch that delivered nothing for `capture.stall_timeout_s` has stalled.
    fn stalled(&self, shared: &RunShared) -> Option<CaptureError> {
        let stall_ms = (self.capture.stall_timeout_s * 1000.0) as u64;
        let now = shared.elapsed_ms();
        [
            ("audio", &shared.last_audio_ms),
            ("video", &shared.last_video_ms),
        ]
        .into_iter()
        .find_map(|(what, last)| {
            let silent_for = now.saturating_sub(last.load(Ordering::Relaxed));
            (silent_for > stall_ms).then(|| CaptureError::Stalled {
                what,
                seconds: silent_for as f64 / 1000.0,
                limit: self.capture.stall_timeout_s,
            })
        })
    }
}

/// The error a bus message carries, naming its element.
fn element_error(msg: &gst::Message) -> Option<CaptureError> {
    let gst::MessageView::Error(err) = msg.view() else {
        return None;
    };
    Some(CaptureError::Element {
        element: element_name(msg.src()),
        message: err.error().to_string(),
        debug: err.debug().map(|d| d.to_string()),
        kind: err.error().kind::<gst::ResourceError>(),
    })
}
