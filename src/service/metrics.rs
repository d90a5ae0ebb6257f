//! What the daemon tells about itself: `/metrics` in Prometheus text format and `/health`
//! (200 while every stream's labels keep coming, else 503 with the reasons as JSON), on
//! a small HTTP server of its own thread. Everything it reports is read from the
//! counters the stages keep anyway; serving never blocks them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::capture::{StreamState, StreamStats};
use crate::infer::Histogram;
use crate::infer::WorkerStats;
use crate::publish::PublishStats;

/// Per stream: results classified, and when the last one came.
#[derive(Debug, Clone, Copy)]
struct Results {
    count: u64,
    last: Option<Instant>,
    since: Instant,
}

/// The live state every report is made from, shared by the daemon's threads.
pub struct Telemetry {
    pub model_id: String,
    pub profile: String,
    pub device: String,
    pub worker: Arc<WorkerStats>,
    pub publish: Arc<PublishStats>,
    pub queue_capacity: usize,
    /// Windows waiting for the model and dropped from the queue (both from the sender).
    pub queue: Box<dyn Fn() -> (usize, u64) + Send + Sync>,
    /// A stream is unhealthy when its last label is older than this.
    pub stale_after: Duration,
    streams: Mutex<Vec<Arc<StreamStats>>>,
    results: Mutex<HashMap<String, Results>>,
}

/// `/health`: whether every stream is producing labels, and why not.
#[derive(Debug, Clone)]
pub struct Health {
    pub ok: bool,
    pub body: serde_json::Value,
}

impl Telemetry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model_id: String,
        profile: String,
        device: String,
        worker: Arc<WorkerStats>,
        publish: Arc<PublishStats>,
        queue_capacity: usize,
        queue: Box<dyn Fn() -> (usize, u64) + Send + Sync>,
        stale_after: Duration,
    ) -> Telemetry {
        Telemetry {
            model_id,
            profile,
            device,
            worker,
            publish,
            queue_capacity,
            queue,
            stale_after,
            streams: Mutex::new(Vec::new()),
            results: Mutex::new(HashMap::new()),
        }
    }

    /// The streams now running (after a start or reload).
    pub fn set_streams(&self, streams: Vec<Arc<StreamStats>>) {
        if let Ok(mut results) = self.results.lock() {
            results.retain(|name, _| streams.iter().any(|s| s.name == *name));
            for s in &streams {
                results.entry(s.name.clone()).or_insert(Results {
                    count: 0,
                    last: None,
                    since: Instant::now(),
                });
            }
        }
        if let Ok(mut current) = self.streams.lock() {
            *current = streams;
        }
    }

    /// A label for `stream` went out.
    pub fn record_result(&self, stream: &str) {
        if let Ok(mut results) = self.results.lock()
            && let Some(r) = results.get_mut(stream)
        {
            r.count += 1;
            r.last = Some(Instant::now());
        }
    }

    fn streams(&self) -> Vec<Arc<StreamStats>> {
        self.streams.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn results(&self, stream: &str) -> Option<Results> {
        self.results.lock().ok()?.get(stream).copied()
    }

    /// Streams whose labels are flowing, of all streams.
    pub fn live_streams(&self) -> (usize, usize) {
        let streams = self.streams();
        let live = streams
            .iter()
            .filter(|s| self.stream_problem(s).is_none())
            .count();
        (live, streams.len())
    }

    /// Why a stream is not producing labels, or `None` when it is.
    fn stream_problem(&self, stream: &StreamStats) -> Option<String> {
        let results = self.results(&stream.name)?;
        let age = results.last.map(|t| t.elapsed());
        if age.is_some_and(|a| a <= self.stale_after) {
            return None;
        }
        let state = match stream.state() {
            StreamState::Backoff { reason } => format!("source failing: {reason}"),
            StreamState::Ended => "source ended".to_string(),
            StreamState::Starting => "source starting".to_string(),
            StreamState::Running => "source running".to_string(),
        };
        Some(match age {
            Some(age) => format!("no label for {:.0} s ({state})", age.as_secs_f64()),
            None => format!(
                "no label yet, {:.0} s after start ({state})",
                results.since.elapsed().as_secs_f64()
            ),
        })
    }

    pub fn health(&self) -> Health {
        let mut problems = Vec::new();
        let mut streams = serde_json::Map::new();
        for s in self.streams() {
            let results = self.results(&s.name);
            let problem = self.stream_problem(&s);
            if let Some(p) = &problem {
                problems.push(format!("stream '{}': {p}", s.name));
            }
            streams.insert(
                s.name.clone(),
                json!({
                    "ok": problem.is_none(),
                    "labels": results.map_or(0, |r| r.count),
                    "last_label_age_s": results.and_then(|r| r.last).map(|t| t.elapsed().as_secs_f64()),
                    "restarts": s.restarts.load(Ordering::Relaxed),
                    "last_error": s.last_error(),
                    "problem": problem,
                }),
            );
        }
        if streams.is_empty() {
            problems.push("no stream is configured".to_string());
        }
        let ok = problems.is_empty();
        let body = json!({
            "status": if ok { "ok" } else { "unhealthy" },
            "reasons": problems,
            "streams": streams,
            "mqtt_connected": self.publish.connected.load(Ordering::Relaxed),
            "model_id": self.model_id,
        });
        Health { ok, body }
    }

    /// Every metric, in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = Metrics::default();
        let model = [
            ("model_id", self.model_id.as_str()),
            ("profile", self.profile.as_str()),
            ("device", self.device.as_str()),
            ("version", env!("CARGO_PKG_VERSION")),
        ];
        out.help(
            "avscene_model_info",
            "gauge",
            "The model in use (always 1).",
        );
        out.sample("avscene_model_info", &model, 1.0);

        let streams = self.streams();
        type StreamCounter = (&'static str, &'static str, fn(&StreamStats) -> u64);
        let counters: [StreamCounter; 6] = [
            ("avscene_stream_windows_total", "Windows assembled.", |s| {
                s.windows.load(Ordering::Relaxed)
            }),
            (
                "avscene_stream_windows_dropped_total",
                "Windows dropped from the full inference queue.",
                |s| s.dropped.load(Ordering::Relaxed),
            ),
            (
                "avscene_stream_restarts_total",
                "Source restarts after a failure or stall.",
                |s| s.restarts.load(Ordering::Relaxed),
            ),
            (
                "avscene_stream_faults_total",
                "Source warnings and suspicious input.",
                |s| s.faults.load(Ordering::Relaxed),
            ),
            (
                "avscene_stream_filled_samples_total",
                "Audio samples filled in for gaps.",
                |s| s.filled_samples.load(Ordering::Relaxed),
            ),
            (
                "avscene_stream_filled_frames_total",
                "Video frames filled in for gaps.",
                |s| s.filled_frames.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in counters {
            out.help(name, "counter", help);
            for s in &streams {
                out.sample(name, &[("stream", &s.name)], read(s) as f64);
            }
        }
        out.help(
            "avscene_stream_running",
            "gauge",
            "1 while the source runs, 0 while it starts, fails or has ended.",
        );
        for s in &streams {
            let running = matches!(s.state(), StreamState::Running);
            out.sample(
                "avscene_stream_running",
                &[("stream", &s.name)],
                f64::from(running as u8),
            );
        }
        // A family's samples follow its own HELP/TYPE lines.
        let results: Vec<(String, Results)> = streams
            .iter()
            .filter_map(|s| Some((s.name.clone(), self.results(&s.name)?)))
            .collect();
        out.help(
            "avscene_windows_classified_total",
            "counter",
            "Windows classified and published, per stream.",
        );
        for (name, r) in &results {
            out.sample(
                "avscene_windows_classified_total",
                &[("stream", name)],
                r.count as f64,
            );
        }
        out.help(
            "avscene_stream_last_label_age_seconds",
            "gauge",
            "Seconds since the stream's last label (absent before the first).",
        );
        for (name, r) in &results {
            if let Some(last) = r.last {
                out.sample(
                    "avscene_stream_last_label_age_seconds",
                    &[("stream", name)],
                    last.elapsed().as_secs_f64(),
                );
            }
        }

        let (depth, dropped) = (self.queue)();
        out.gauge(
            "avscene_queue_depth",
            "Windows waiting for the model.",
            depth as f64,
        );
        out.gauge(
            "avscene_queue_capacity",
            "Windows the queue holds before dropping the oldest.",
            self.queue_capacity as f64,
        );
        out.counter(
            "avscene_queue_dropped_total",
            "Windows dropped because the queue was full.",
            dropped,
        );

        let w = &self.worker;
        out.counter(
            "avscene_inference_windows_total",
            "Windows classified.",
            w.classified.load(Ordering::Relaxed),
        );
        out.counter(
            "avscene_inference_stale_total",
            "Windows dropped because they waited longer than inference.stale_after_s.",
            w.stale.load(Ordering::Relaxed),
        );
        out.counter(
            "avscene_inference_batches_total",
            "Model calls.",
            w.batches.load(Ordering::Relaxed),
        );
        out.counter(
            "avscene_inference_results_dropped_total",
            "Results dropped because the publisher did not keep up.",
            w.results_dropped.load(Ordering::Relaxed),
        );
        out.histogram(
            "avscene_inference_latency_seconds",
            "From a window's completion to its label.",
            &w.latency,
        );
        out.histogram(
            "avscene_inference_batch_size",
            "Windows per model call.",
            &w.batch_size,
        );
        out.gauge(
            "avscene_inference_heartbeat_age_seconds",
            "Seconds since the inference worker last showed progress.",
            w.since_heartbeat().as_secs_f64(),
        );
        let [audio_hits, audio_encoded, image_hits, image_encoded] = w.cache_counts();
        out.help(
            "avscene_cache_hits_total",
            "counter",
            "Embeddings reused from an overlapping earlier window.",
        );
        out.sample(
            "avscene_cache_hits_total",
            &[("branch", "audio")],
            audio_hits as f64,
        );
        out.sample(
            "avscene_cache_hits_total",
            &[("branch", "image")],
            image_hits as f64,
        );
        out.help(
            "avscene_cache_misses_total",
            "counter",
            "Embeddings computed.",
        );
        out.sample(
            "avscene_cache_misses_total",
            &[("branch", "audio")],
            audio_encoded as f64,
        );
        out.sample(
            "avscene_cache_misses_total",
            &[("branch", "image")],
            image_encoded as f64,
        );

        let p = &self.publish;
        out.gauge(
            "avscene_mqtt_connected",
            "1 while connected to the broker.",
            f64::from(p.connected.load(Ordering::Relaxed) as u8),
        );
        out.counter(
            "avscene_mqtt_published_total",
            "Messages handed to the broker connection.",
            p.published.load(Ordering::Relaxed),
        );
        out.gauge(
            "avscene_mqtt_outbox_messages",
            "Messages waiting for the broker.",
            p.outbox.load(Ordering::Relaxed) as f64,
        );
        out.counter(
            "avscene_mqtt_dropped_total",
            "Messages dropped because the outbox was full.",
            p.dropped.load(Ordering::Relaxed),
        );
        out.counter(
            "avscene_mqtt_refused_total",
            "Results refused because the publisher's queue was full.",
            p.refused.load(Ordering::Relaxed),
        );

        if let Some(rss) = super::process::rss_bytes() {
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss as f64,
            );
        }
        if let Some(cpu) = super::process::cpu_seconds() {
            out.gauge(
                "process_cpu_seconds_total",
                "User and system CPU time in seconds.",
                cpu,
            );
        }
        out.text
    }
}

/// Prometheus text format, written by hand: a handful of metric kinds need no crate.
#[derive(Default)]
struct Metrics {
    text: String,
}

impl Metrics {
    fn help(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.text, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.help(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.help(name, "counter", help);
        self.sample(name, &[], value as f64);
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.help(name, "histogram", help);
        let (cumulative, sum, count) = histogram.snapshot();
        let bucket = format!("{name}_bucket");
        for (bound, n) in histogram.bounds.iter().zip(&cumulative) {
            self.sample(&bucket, &[("le", &bound.to_string())], *n as f64);
        }
        self.sample(&bucket, &[("le", "+Inf")], count as f64);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count as f64);
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The HTTP server of `/metrics` and `/health`.
pub struct MetricsServer {
    pub address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listen on `address`; an address in use is an error that names it.
    pub fn start(address: SocketAddr, telemetry: Arc<Telemetry>) -> Result<MetricsServer, String> {
        let listener = TcpListener::bind(address)
            .map_err(|e| format!("metrics.listen {address}: cannot listen: {e}"))?;
        let address = listener.local_addr().unwrap_or(address);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_t = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for connection in listener.incoming() {
                    if stop_t.load(Ordering::SeqCst) {
                        break;
                    }
                    match connection {
                        Ok(stream) => {
                            if let Err(e) = answer(stream, &telemetry) {
                                tracing::debug!("metrics: {e}");
                            }
                        }
                        Err(e) => tracing::debug!("metrics: accept: {e}"),
                    }
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        tracing::info!("metrics on http://{address}/metrics, health on http://{address}/health");
        Ok(MetricsServer {
            address,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Answer one request (HTTP/1.1, one request per connection).
fn answer(mut stream: TcpStream, telemetry: &Telemetry) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&request);
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            telemetry.render(),
        ),
        ("GET" | "HEAD", "/health") => {
            let health = telemetry.health();
            let status = if health.ok {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, "application/json", format!("{}\n", health.body))
        }
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain",
            "avscene serves /metrics and /health\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}
