//! The inference thread: owns the model, collects windows from every stream into batches
//! (up to `max_batch`, waiting at most `max_wait_ms`), drops windows that waited longer
//! than `stale_after_s` so latency stays bounded on slow hardware, and sends results on
//! without ever blocking.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use super::{Engine, InferenceConfig, SceneResult};
use crate::capture::{RecvTimeoutError, WindowReceiver};
use crate::support::metrics::{Collector, Encoder, Histogram, counter, counters, gauge};

/// Seconds from a window's completion to its result (queue wait + model).
pub const LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Windows per model call.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Counters of the worker.
#[derive(Debug)]
pub struct WorkerStats {
    pub classified: AtomicU64,
    /// Windows dropped because they waited longer than `stale_after_s`.
    pub stale: AtomicU64,
    pub batches: AtomicU64,
    /// Results dropped because their consumer did not keep up.
    pub results_dropped: AtomicU64,
    pub latency: Histogram,
    pub batch_size: Histogram,
    /// The engine's embedding cache counters, copied after every batch.
    pub cache: [AtomicU64; 4],
    created: Instant,
    /// Milliseconds since `created` at the last completed batch or idle wait (a hung
    /// worker stops advancing it).
    heartbeat_ms: AtomicU64,
    longest_batch_ms: AtomicU64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            classified: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            results_dropped: AtomicU64::new(0),
            latency: Histogram::new(LATENCY_BUCKETS),
            batch_size: Histogram::new(BATCH_BUCKETS),
            cache: Default::default(),
            created: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            longest_batch_ms: AtomicU64::new(0),
        }
    }
}

impl WorkerStats {
    fn beat(&self) {
        let now = self.created.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(now, Ordering::Relaxed);
    }

    /// Time since the worker last showed progress (a finished batch or an idle wait).
    pub fn since_heartbeat(&self) -> Duration {
        let beat = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(beat)
    }

    /// The longest model call so far.
    pub fn longest_batch(&self) -> Duration {
        Duration::from_millis(self.longest_batch_ms.load(Ordering::Relaxed))
    }

    /// Whether the worker is making progress: its heartbeat is younger than `floor`, or
    /// than three times its slowest batch (a slow CPU is not a hung worker).
    pub fn is_alive(&self, floor: Duration) -> bool {
        self.since_heartbeat() <= floor.max(self.longest_batch() * 3)
    }

    /// (audio frames reused, audio frames encoded, images reused, images encoded).
    pub fn cache_counts(&self) -> [u64; 4] {
        self.cache.each_ref().map(|c| c.load(Ordering::Relaxed))
    }
}

/// The worker's metrics.
impl Collector for WorkerStats {
    fn encode(&self, mut encoder: Encoder) -> Result<(), std::fmt::Error> {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let e = &mut encoder;
        counter(
            e,
            "avscene_inference_windows",
            "Windows classified.",
            read(&self.classified),
        )?;
        counter(
            e,
            "avscene_inference_stale",
            "Windows dropped because they waited longer than inference.stale_after_s.",
            read(&self.stale),
        )?;
        counter(
            e,
            "avscene_inference_batches",
            "Model calls.",
            read(&self.batches),
        )?;
        counter(
            e,
            "avscene_inference_results_dropped",
            "Results dropped because the publisher did not keep up.",
            read(&self.results_dropped),
        )?;
        self.latency.encode(
            e,
            "avscene_inference_latency_seconds",
            "From a window's completion to its label.",
        )?;
        self.batch_size
            .encode(e, "avscene_inference_batch_size", "Windows per model call.")?;
        gauge(
            e,
            "avscene_inference_heartbeat_age_seconds",
            "Seconds since the inference worker last showed progress.",
            self.since_heartbeat().as_secs_f64(),
        )?;
        let [audio_hits, audio_encoded, image_hits, image_encoded] = self.cache_counts();
        counters(
            e,
            "avscene_cache_hits",
            "Embeddings reused from an overlapping earlier window.",
            "branch",
            [("audio", audio_hits), ("image", image_hits)],
        )?;
        counters(
            e,
            "avscene_cache_misses",
            "Embeddings computed.",
            "branch",
            [("audio", audio_encoded), ("image", image_encoded)],
        )
    }
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

    /// Stop, waiting at most `limit` for the batch in progress; past it the thread is
    /// left to finish on its own (its results are dropped). Returns whether it stopped.
    pub fn stop_within(mut self, limit: Duration) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let until = Instant::now() + limit;
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            if Instant::now() >= until {
                self.thread = None; // detached
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
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
    windows: WindowReceiver,
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
    windows: &WindowReceiver,
    results: &Sender<SceneResult>,
    stats: &WorkerStats,
    stop: &AtomicBool,
) -> Engine {
    let max_wait = Duration::from_millis(config.max_wait_ms);
    let stale_after = Duration::from_secs_f64(config.stale_after_s);
    let mut report = RateReport::new();
    let faster = engine.faster_settings().join(", ");
    while !stop.load(Ordering::SeqCst) {
        stats.beat();
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
        let began = Instant::now();
        let classified = engine.classify(&batch);
        let took = began.elapsed().as_millis() as u64;
        stats.longest_batch_ms.fetch_max(took, Ordering::Relaxed);
        stats.batch_size.observe(batch.len() as f64);
        let counts = engine.counts();
        let cache = [
            counts.audio_hits,
            counts.audio_encoded,
            counts.image_hits,
            counts.image_encoded,
        ];
        for (stat, value) in stats.cache.iter().zip(cache) {
            stat.store(value, Ordering::Relaxed);
        }
        for result in classified {
            stats
                .latency
                .observe((result.queue_wait + result.compute).as_secs_f64());
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
        report.maybe_log(&faster);
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

    /// `faster`: the settings that would help, for the warning.
    fn maybe_log(&mut self, faster: &str) {
        let elapsed = self.since.elapsed().as_secs_f64();
        let due = if self.stale > 0 { 30.0 } else { 600.0 };
        if elapsed < due {
            return;
        }
        let rate = self.classified as f64 / elapsed;
        if self.stale > 0 {
            tracing::warn!(
                "inference: {rate:.2} windows/s classified, {} stale windows dropped in {elapsed:.0} s: \
                 the hardware does not keep up; faster, least accuracy lost first: {faster} \
                 (README: Staying live on a small CPU)",
                self.stale
            );
        } else {
            tracing::info!("inference: {rate:.2} windows/s classified");
        }
        *self = RateReport::new();
    }
}
