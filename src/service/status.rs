//! The one-line `STATUS=` summary systemd shows: streams live, windows/s, MQTT state.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::infer::WorkerStats;
use crate::metrics::Telemetry;

/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The one-line `STATUS=` summary: streams live, windows/s, MQTT state.
pub(super) struct StatusLine {
    worker: Arc<WorkerStats>,
    since: Instant,
    classified: u64,
}

impl StatusLine {
    pub fn new(worker: Arc<WorkerStats>) -> StatusLine {
        let classified = worker.classified.load(Ordering::Relaxed);
        StatusLine {
            worker,
            since: Instant::now(),
            classified,
        }
    }

    pub fn due(&self) -> bool {
        self.since.elapsed() >= STATUS_EVERY
    }

    pub fn line(&mut self, telemetry: &Telemetry) -> String {
        let classified = self.worker.classified.load(Ordering::Relaxed);
        let elapsed = self.since.elapsed().as_secs_f64().max(1e-3);
        let rate = (classified - self.classified) as f64 / elapsed;
        (self.since, self.classified) = (Instant::now(), classified);
        let (live, all) = telemetry.live_streams();
        let mqtt = if telemetry.publish.connected.load(Ordering::Relaxed) {
            "connected"
        } else {
            "disconnected"
        };
        format!("{live}/{all} streams live, {rate:.2} windows/s, mqtt {mqtt}")
    }
}
