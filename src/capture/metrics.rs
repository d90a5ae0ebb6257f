//! The capture stage's metrics, described beside what it counts: per stream (windows,
//! drops, restarts, faults, filled samples and frames, whether it runs) and the window
//! queue shared by the streams.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::handoff::WindowSender;
use super::stream::{StreamState, StreamStats};
use crate::support::metrics::{Collector, Encoder, counter, counters, gauge, gauges};

/// The streams now running, as the daemon last set them (start, reload).
#[derive(Debug, Clone, Default)]
pub struct StreamMetrics(Arc<Mutex<Vec<Arc<StreamStats>>>>);

type Read = fn(&StreamStats) -> u64;

/// Per-stream counters: metric name (without `_total`), help, and how to read it.
const STREAM_COUNTERS: [(&str, &str, Read); 6] = [
    ("avscene_stream_windows", "Windows assembled.", |s| {
        s.windows.load(Ordering::Relaxed)
    }),
    (
        "avscene_stream_windows_dropped",
        "Windows dropped from the full inference queue.",
        |s| s.dropped.load(Ordering::Relaxed),
    ),
    (
        "avscene_stream_restarts",
        "Source restarts after a failure or stall.",
        |s| s.restarts.load(Ordering::Relaxed),
    ),
    (
        "avscene_stream_faults",
        "Source warnings and suspicious input.",
        |s| s.faults.load(Ordering::Relaxed),
    ),
    (
        "avscene_stream_filled_samples",
        "Audio samples filled in for gaps.",
        |s| s.filled_samples.load(Ordering::Relaxed),
    ),
    (
        "avscene_stream_filled_frames",
        "Video frames filled in for gaps.",
        |s| s.filled_frames.load(Ordering::Relaxed),
    ),
];

impl StreamMetrics {
    pub fn set(&self, streams: Vec<Arc<StreamStats>>) {
        if let Ok(mut current) = self.0.lock() {
            *current = streams;
        }
    }

    pub fn streams(&self) -> Vec<Arc<StreamStats>> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Collector for StreamMetrics {
    fn encode(&self, mut encoder: Encoder) -> Result<(), std::fmt::Error> {
        let streams = self.streams();
        for (name, help, read) in STREAM_COUNTERS {
            let values = streams.iter().map(|s| (s.name.as_str(), read(s)));
            counters(&mut encoder, name, help, "stream", values)?;
        }
        let running = streams.iter().map(|s| {
            let running = matches!(s.state(), StreamState::Running);
            (s.name.as_str(), f64::from(u8::from(running)))
        });
        gauges(
            &mut encoder,
            "avscene_stream_running",
            "1 while the source runs, 0 while it starts, fails or has ended.",
            "stream",
            running,
        )
    }
}

impl Collector for WindowSender {
    fn encode(&self, mut encoder: Encoder) -> Result<(), std::fmt::Error> {
        gauge(
            &mut encoder,
            "avscene_queue_depth",
            "Windows waiting for the model.",
            self.len() as f64,
        )?;
        gauge(
            &mut encoder,
            "avscene_queue_capacity",
            "Windows the queue holds before dropping the oldest.",
            self.capacity() as f64,
        )?;
        counter(
            &mut encoder,
            "avscene_queue_dropped",
            "Windows dropped because the queue was full.",
            self.dropped(),
        )
    }
}
