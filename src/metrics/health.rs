//! The health policy: a stream is healthy while its labels keep coming (the last one no
//! older than `metrics.health_stale_s`); the daemon is healthy while every stream is.
//! Before its first label a stream whose source has not failed is `starting` — healthy
//! to a supervisor (200), so a slow first window is not restarted — for at most one
//! window and twice `health_stale_s`.
//! MQTT being away does not make it unhealthy (labels still flow, into the outbox): it
//! is reported beside. Kept apart from how `/health` and `/metrics` are written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::{StreamState, StreamStats};
use crate::support::metrics::{Collector, Encoder, counters, gauges};

/// Per stream: labels published, and when the last one went out.
#[derive(Debug, Clone, Copy)]
struct Published {
    count: u64,
    last: Option<Instant>,
    since: Instant,
}

/// The labels each running stream has produced.
#[derive(Debug, Default)]
pub struct Labels(Mutex<HashMap<String, Published>>);

impl Labels {
    /// The streams now running (after a start or reload): new ones start counting.
    pub fn set_streams<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let names: Vec<&str> = names.into_iter().collect();
        if let Ok(mut map) = self.0.lock() {
            map.retain(|name, _| names.contains(&name.as_str()));
            for name in names {
                map.entry(name.to_string()).or_insert(Published {
                    count: 0,
                    last: None,
                    since: Instant::now(),
                });
            }
        }
    }

    /// A label for `stream` went out.
    pub fn record(&self, stream: &str) {
        if let Ok(mut map) = self.0.lock()
            && let Some(p) = map.get_mut(stream)
        {
            p.count += 1;
            p.last = Some(Instant::now());
        }
    }

    fn get(&self, stream: &str) -> Option<Published> {
        self.0.lock().ok()?.get(stream).copied()
    }

    fn all(&self) -> Vec<(String, Published)> {
        let mut all: Vec<(String, Published)> = self
            .0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl Collector for Labels {
    fn encode(&self, mut encoder: Encoder) -> Result<(), std::fmt::Error> {
        let all = self.all();
        counters(
            &mut encoder,
            "avscene_windows_classified",
            "Windows classified and published, per stream.",
            "stream",
            all.iter().map(|(name, p)| (name.as_str(), p.count)),
        )?;
        gauges(
            &mut encoder,
            "avscene_stream_last_label_age_seconds",
            "Seconds since the stream's last label (absent before the first).",
            "stream",
            all.iter()
                .filter_map(|(name, p)| Some((name.as_str(), p.last?.elapsed().as_secs_f64()))),
        )
    }
}

/// `/health`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// `ok`, `starting` (no stream failing, some without a first label yet) or
    /// `unhealthy`.
    pub status: &'static str,
    pub reasons: Vec<String>,
    pub streams: BTreeMap<String, StreamHealth>,
    pub mqtt_connected: bool,
    pub model_id: String,
}

impl HealthReport {
    pub fn ok(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// One stream in `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamHealth {
    /// Healthy, or starting.
    pub ok: bool,
    /// No label yet, the source not failing, within the start allowance.
    pub starting: bool,
    pub labels: u64,
    pub last_label_age_s: Option<f64>,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub problem: Option<String>,
}

/// The policy's one setting.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    /// A stream is unhealthy when its last label is older than this.
    pub stale_after: Duration,
}

/// What the policy says of one stream.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Ok,
    Starting,
    Problem(String),
}

impl HealthPolicy {
    /// How long a stream may go without its first label: the first window must fill,
    /// and the first inference computes every frame (no cache yet).
    fn start_allowance(&self) -> Duration {
        Duration::from_secs_f64(crate::features::WINDOW_SECONDS) + self.stale_after * 2
    }

    /// Whether a stream is producing labels, starting, or why it is not.
    fn verdict(&self, stream: &StreamStats, labels: &Labels) -> Verdict {
        let Some(published) = labels.get(&stream.name) else {
            return Verdict::Ok;
        };
        let age = published.last.map(|t| t.elapsed());
        if age.is_some_and(|a| a <= self.stale_after) {
            return Verdict::Ok;
        }
        let state = stream.state();
        // A source that has already failed once is not starting: it is failing.
        let source_fine = matches!(state, StreamState::Starting | StreamState::Running)
            && stream.restarts.load(Ordering::Relaxed) == 0;
        if age.is_none() && source_fine && published.since.elapsed() <= self.start_allowance() {
            return Verdict::Starting;
        }
        let state = match state {
            StreamState::Backoff { reason, .. } => format!("source failing: {reason}"),
            StreamState::Ended => "source ended".to_string(),
            StreamState::Starting => "source starting".to_string(),
            StreamState::Running => "source running".to_string(),
        };
        Verdict::Problem(match age {
            Some(age) => format!("no label for {:.0} s ({state})", age.as_secs_f64()),
            None => format!(
                "no label yet, {:.0} s after start ({state})",
                published.since.elapsed().as_secs_f64()
            ),
        })
    }

    /// Streams whose labels are flowing, of all streams.
    pub fn live(&self, streams: &[std::sync::Arc<StreamStats>], labels: &Labels) -> (usize, usize) {
        let live = streams
            .iter()
            .filter(|s| self.verdict(s, labels) == Verdict::Ok)
            .count();
        (live, streams.len())
    }

    pub fn check(
        &self,
        streams: &[std::sync::Arc<StreamStats>],
        labels: &Labels,
        mqtt_connected: bool,
        model_id: &str,
    ) -> HealthReport {
        let mut reasons = Vec::new();
        let mut report = BTreeMap::new();
        let mut starting = false;
        for s in streams {
            let published = labels.get(&s.name);
            let verdict = self.verdict(s, labels);
            let is_starting = verdict == Verdict::Starting;
            starting |= is_starting;
            let problem = match verdict {
                Verdict::Problem(p) => Some(p),
                _ => None,
            };
            if let Some(p) = &problem {
                reasons.push(format!("stream '{}': {p}", s.name));
            }
            report.insert(
                s.name.clone(),
                StreamHealth {
                    ok: problem.is_none(),
                    starting: is_starting,
                    labels: published.map_or(0, |p| p.count),
                    last_label_age_s: published
                        .and_then(|p| p.last)
                        .map(|t| t.elapsed().as_secs_f64()),
                    restarts: s.restarts.load(Ordering::Relaxed),
                    last_error: s.last_error(),
                    problem,
                },
            );
        }
        if streams.is_empty() {
            reasons.push("no stream is configured".to_string());
        }
        HealthReport {
            status: match (reasons.is_empty(), starting) {
                (false, _) => "unhealthy",
                (true, true) => "starting",
                (true, false) => "ok",
            },
            reasons,
            streams: report,
            mqtt_connected,
            model_id: model_id.to_string(),
        }
    }
}
