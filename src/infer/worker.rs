//! The inference thread: owns the model, collects windows from every stream into batches
//! (up to `max_batch`, waiting at most `max_wait_ms`), drops windows that waited longer
//! than `stale_after_s` so latency stays bounded on slow hardware, and sends results on
//! without ever blocking.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::{Engine, InferenceConfig, SceneResult};
use crate::window::Window;

/// Counters of the worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub classified: AtomicU64,
    /// Windows dropped because they waited longer than `stale_after_s`.
    pub stale: AtomicU64,
    pub batches: AtomicU64,
    /// Results dropped because their consumer did not keep up.
    pub results_dropped: AtomicU64,
    /// Milliseconds since the worker started at its last completed batch or idle wait
    /// (a hung worker stops advancing it).
    pub heartbeat_ms: AtomicU64,
}

pub struct Worker {
    pub stats: Arc<WorkerStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Engine>>,
}

impl Worker {
    /// Stop after the batch in progress; returns the engine (and its model).
    pub fn stop(mut self) -> Option<Engine> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start the inference thread. `threads` > 0 sets libtorch's intra-op threads.
pub fn spawn_worker(
    engine: Engine,
    config: &InferenceConfig,
    threads: usize,
    windows: Receiver<Window>,
    results: Sender<SceneResult>,
) -> std::io::Result<Worker> {
    let stats = Arc::new(WorkerStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let config = config.clone();
    let (stats_t, stop_t) = (stats.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("inference".into())
        .spawn(move || {
            if threads > 0 {
                tch::set_num_threads(threads as i32);
            }
            run(engine, &config, &windows, &results, &stats_t, &stop_t)
        })?;
    Ok(Worker {
        stats,
        stop,
        thread: Some(thread),
    })
}

fn run(
    mut engine: Engine,
    config: &InferenceConfig,
    windows: &Receiver<Window>,
    results: &Sender<SceneResult>,
    stats: &WorkerStats,
    stop: &AtomicBool,
) -> Engine {
    let started = Instant::now();
    let max_wait = Duration::from_millis(config.max_wait_ms);
    let stale_after = Duration::from_secs_f64(config.stale_after_s);
    let mut report = RateReport::new();
    while !stop.load(Ordering::SeqCst) {
        stats
            .heartbeat_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let first = match windows.recv_timeout(Duration::from_millis(100)) {
            Ok(w) => w,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + max_wait;
        while batch.len() < config.max_batch {
            match windows.recv_deadline(deadline) {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let before = batch.len();
        batch.retain(|w| w.ready_at.elapsed() <= stale_after);
        let stale = (before - batch.len()) as u64;
        if stale > 0 {
            stats.stale.fetch_add(stale, Ordering::Relaxed);
            report.stale += stale;
        }
        if batch.is_empty() {
            continue;
        }
        for result in engine.classify(&batch) {
            match results.try_send(result) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    stats.results_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        stats
            .classified
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        report.classified += batch.len() as u64;
        report.maybe_log();
    }
    engine
}

/// The effective classification rate, logged every 30 s while anything is dropped (and
/// every 10 minutes otherwise).
struct RateReport {
    since: Instant,
    classified: u64,
    stale: u64,
}

impl RateReport {
    fn new() -> RateReport {
        RateReport {
            since: Instant::now(),
            classified: 0,
            stale: 0,
        }
    }

    fn maybe_log(&mut self) {
        let elapsed = self.since.elapsed().as_secs_f64();
        let due = if self.stale > 0 { 30.0 } else { 600.0 };
        if elapsed < due {
            return;
        }
        let rate = self.classified as f64 / elapsed;
        if self.stale > 0 {
            tracing::warn!(
                "inference: {rate:.2} windows/s classified, {} stale windows dropped in {elapsed:.0} s: \
                 the hardware does not keep up (see inference.audio_stride and model.profile)",
                self.stale
            );
        } else {
            tracing::info!("inference: {rate:.2} windows/s classified");
        }
        *self = RateReport::new();
    }
}
