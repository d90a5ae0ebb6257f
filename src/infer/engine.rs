//! The model applied to windows, either from scratch ("naive") or through a per-stream
//! cache of per-frame embeddings ("cached"): every OpenL3 frame (0.1 s grid) and every
//! image is encoded once and reused by the overlapping windows that contain it, so a 1 s
//! hop costs 10 OpenL3 frames, one image and a head pass instead of 96 + 10 encodings.
//! Both give the same result (the encoders are per-frame in eval mode).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tch::{Device, Kind, Tensor};

use super::InferenceConfig;
use crate::features::image;
use crate::model::Model;
use crate::window::{FRAME_SIDE, SAMPLE_RATE, Window};

/// Frames per OpenL3 forward call: bounds activation memory (≈ 100 MB per 8 frames at
/// full size) and is faster per frame on CPU than one huge batch.
const OPENL3_CHUNK: usize = 8;
/// Images per image-branch forward call.
const IMAGE_CHUNK: usize = 16;
const FRAME_HOP: usize = (SAMPLE_RATE / 10) as usize;
const FRAME_SAMPLES: usize = SAMPLE_RATE as usize;

/// The classification of one window.
#[derive(Debug, Clone)]
pub struct SceneResult {
    pub stream: Arc<str>,
    pub seq: u64,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Probabilities of every class, in the model's class order.
    pub probabilities: Vec<f32>,
    pub label: String,
    pub confidence: f32,
    /// Time between the window being complete and its batch starting.
    pub queue_wait: Duration,
    /// Time the batch took to compute.
    pub compute: Duration,
    pub batch: usize,
    pub model_id: String,
    pub filled_samples: usize,
    pub filled_frames: usize,
}

/// Cache traffic since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    pub audio_hits: u64,
    pub audio_encoded: u64,
    pub image_hits: u64,
    pub image_encoded: u64,
}

/// One stream's cached embeddings.
#[derive(Default)]
struct StreamCache {
    last_start: Option<u64>,
    /// OpenL3 embedding (512) per frame position (0.1 s grid).
    audio: BTreeMap<u64, Tensor>,
    /// Image-branch embedding (dim) per frame, keyed by the frame's allocation (windows
    /// share frames by `Arc`; the entry holds the `Arc`, so the key stays unique).
    images: HashMap<usize, (Arc<[u8]>, Tensor)>,
}

fn frame_key(frame: &Arc<[u8]>) -> usize {
    Arc::as_ptr(frame) as *const u8 as usize
}

/// The 96 OpenL3 frames of a window, flattened (96 × 48 000 samples).
pub fn window_audio_frames(w: &Window) -> Vec<f32> {
    Engine::window_frames(w)
}

pub struct Engine {
    model: Model,
    device: Device,
    config: InferenceConfig,
    caches: HashMap<Arc<str>, StreamCache>,
    counts: CacheCounts,
}

impl Engine {
    pub fn new(model: Model, config: &InferenceConfig) -> Engine {
        let device = model.vs.device();
        if model.net.openl3.set_fft(config.fast_stft) != config.fast_stft {
            tracing::warn!("inference.fast_stft: the model's DFT kernels are custom; using them");
        }
        Engine {
            model,
            device,
            config: config.clone(),
            caches: HashMap::new(),
            counts: CacheCounts::default(),
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Give the model back (the caches are dropped).
    pub fn into_model(self) -> Model {
        self.model
    }

    pub fn counts(&self) -> CacheCounts {
        self.counts
    }

    /// Embeddings held across all streams (audio frames, images): bounded by the windows
    /// in flight.
    pub fn cached_entries(&self) -> (usize, usize) {
        self.caches
            .values()
            .fold((0, 0), |(a, i), c| (a + c.audio.len(), i + c.images.len()))
    }

    /// Forget a stream's cache (it stopped).
    pub fn forget(&mut self, stream: &str) {
        self.caches.retain(|name, _| &**name != stream);
    }

    /// Classify a batch of windows (from any streams, each stream's in order).
    pub fn classify(&mut self, windows: &[Window]) -> Vec<SceneResult> {
        if windows.is_empty() {
            return Vec::new();
        }
        let started = Instant::now();
        let probabilities = tch::no_grad(|| {
            let logits = if self.config.cache {
                self.logits_cached(windows)
            } else {
                self.logits_naive(windows)
            };
            logits.softmax(-1, Kind::Float).to_device(Device::Cpu)
        });
        let compute = started.elapsed();
        let classes = &self.model.spec.classes;
        windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let probs: Vec<f32> =
                    Vec::<f32>::try_from(&probabilities.get(i as i64)).unwrap_or_default();
                let (top, confidence) =
                    probs
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f32::MIN),
                            |best, (j, &p)| if p > best.1 { (j, p) } else { best },
                        );
                SceneResult {
                    stream: w.stream.clone(),
                    seq: w.seq,
                    start: w.start_wall,
                    end: w.end_wall,
                    label: classes.get(top).cloned().unwrap_or_default(),
                    confidence,
                    probabilities: probs,
                    queue_wait: started.saturating_duration_since(w.ready_at),
                    compute,
                    batch: windows.len(),
                    model_id: self.model.id.clone(),
                    filled_samples: w.filled_samples,
                    filled_frames: w.filled_frames,
                }
            })
            .collect()
    }

    /// Append the samples of OpenL3 frame `i` of `w`: 1 s from `i` × 0.1 s into its
    /// lead + audio (read in place, no joined copy).
    fn push_frame(w: &Window, i: usize, out: &mut Vec<f32>) {
        let (start, end) = (i * FRAME_HOP, i * FRAME_HOP + FRAME_SAMPLES);
        let lead = w.audio_lead.len();
        if start < lead {
            out.extend_from_slice(&w.audio_lead[start..lead.min(end)]);
        }
        if end > lead {
            out.extend_from_slice(&w.audio[start.saturating_sub(lead)..end - lead]);
        }
    }

    /// The 96 OpenL3 frames of a window, flattened.
    fn window_frames(w: &Window) -> Vec<f32> {
        let mut frames = Vec::with_capacity(96 * FRAME_SAMPLES);
        for i in 0..96 {
            Self::push_frame(w, i, &mut frames);
        }
        frames
    }

    fn encode_audio(&self, frames: &[f32]) -> Tensor {
        let n = frames.len() / FRAME_SAMPLES;
        let all = Tensor::from_slice(frames)
            .view([n as i64, FRAME_SAMPLES as i64])
            .to_device(self.device);
        let chunks: Vec<Tensor> = all
            .split(OPENL3_CHUNK as i64, 0)
            .iter()
            .map(|c| self.model.net.embed_audio_frames(c))
            .collect();
        Tensor::cat(&chunks, 0)
    }

    fn encode_images(&self, frames: &[&Arc<[u8]>]) -> Tensor {
        let features = &self.model.features;
        let side = FRAME_SIDE as i64;
        let mut bytes = Vec::with_capacity(frames.len() * frames.first().map_or(0, |f| f.len()));
        for f in frames {
            bytes.extend_from_slice(f);
        }
        let images = Tensor::from_slice(&bytes)
            .view([frames.len() as i64, side, side, 3])
            .to_device(self.device)
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            / 255.0;
        let images = image::normalise(&images, features);
        let chunks: Vec<Tensor> = images
            .split(IMAGE_CHUNK as i64, 0)
            .iter()
            .map(|c| self.model.net.embed_images(c, false))
            .collect();
        Tensor::cat(&chunks, 0)
    }

    /// Every window from scratch: 96 OpenL3 frames and 10 images each.
    fn logits_naive(&self, windows: &[Window]) -> Tensor {
        let b = windows.len() as i64;
        let frames: Vec<f32> = windows.iter().flat_map(Self::window_frames).collect();
        let audio = self.encode_audio(&frames).view([b, 96, -1]);
        let images: Vec<&Arc<[u8]>> = windows.iter().flat_map(|w| w.frames.iter()).collect();
        let pictures = self.encode_images(&images).view([b, 10, -1]);
        self.model.net.head_t(&audio, &pictures, false)
    }

    /// Encode what the caches lack, batched across the windows, then run the head.
    fn logits_cached(&mut self, windows: &[Window]) -> Tensor {
        let stride = self.config.audio_stride.max(1);
        // A stream whose timeline went back (restart) starts a fresh cache.
        for w in windows {
            let cache = self.caches.entry(w.stream.clone()).or_default();
            if cache.last_start.is_some_and(|s| w.start_sample < s) {
                *cache = StreamCache::default();
            }
            cache.last_start = Some(w.start_sample);
        }
        // Missing audio positions (deduplicated across the batch) and their samples.
        let mut audio_missing: Vec<(Arc<str>, u64)> = Vec::new();
        let mut audio_samples: Vec<f32> = Vec::new();
        let mut image_missing: Vec<(Arc<str>, Arc<[u8]>)> = Vec::new();
        for w in windows {
            let base = w.first_frame_position();
            let cache = &self.caches[&w.stream];
            for i in 0..96u64 {
                let p = base + i;
                let q = p - p % stride;
                if cache.audio.contains_key(&q)
                    || audio_missing.iter().any(|(s, x)| *s == w.stream && *x == q)
                {
                    self.counts.audio_hits += 1;
                    continue;
                }
                Self::push_frame(w, (q - base) as usize, &mut audio_samples);
                audio_missing.push((w.stream.clone(), q));
            }
            for f in &w.frames {
                let key = frame_key(f);
                if cache.images.contains_key(&key)
                    || image_missing
                        .iter()
                        .any(|(s, m)| *s == w.stream && Arc::ptr_eq(m, f))
                {
                    self.counts.image_hits += 1;
                } else {
                    image_missing.push((w.stream.clone(), f.clone()));
                }
            }
        }
        if !audio_missing.is_empty() {
            let encoded = self.encode_audio(&audio_samples);
            self.counts.audio_encoded += audio_missing.len() as u64;
            for (i, (stream, q)) in audio_missing.into_iter().enumerate() {
                if let Some(cache) = self.caches.get_mut(&stream) {
                    cache.audio.insert(q, encoded.get(i as i64));
                }
            }
        }
        if !image_missing.is_empty() {
            let frames: Vec<&Arc<[u8]>> = image_missing.iter().map(|(_, f)| f).collect();
            let encoded = self.encode_images(&frames);
            self.counts.image_encoded += image_missing.len() as u64;
            for (i, (stream, frame)) in image_missing.into_iter().enumerate() {
                if let Some(cache) = self.caches.get_mut(&stream) {
                    cache
                        .images
                        .insert(frame_key(&frame), (frame, encoded.get(i as i64)));
                }
            }
        }
        // Assemble the batch from the caches.
        let mut audio_rows = Vec::with_capacity(windows.len());
        let mut image_rows = Vec::with_capacity(windows.len());
        for w in windows {
            let cache = &self.caches[&w.stream];
            let base = w.first_frame_position();
            let audio: Vec<Tensor> = (0..96u64)
                .map(|i| {
                    let p = base + i;
                    cache.audio[&(p - p % stride)].shallow_clone()
                })
                .collect();
            audio_rows.push(Tensor::stack(&audio, 0));
            let images: Vec<Tensor> = w
                .frames
                .iter()
                .map(|f| cache.images[&frame_key(f)].1.shallow_clone())
                .collect();
            image_rows.push(Tensor::stack(&images, 0));
        }
        let logits = self.model.net.head_t(
            &Tensor::stack(&audio_rows, 0),
            &Tensor::stack(&image_rows, 0),
            false,
        );
        self.evict(windows, stride);
        logits
    }

    /// Keep only what a stream's next windows can use: audio positions from its latest
    /// window's start on, and the images of that window.
    fn evict(&mut self, windows: &[Window], stride: u64) {
        let mut latest: HashMap<&Arc<str>, &Window> = HashMap::new();
        for w in windows {
            latest.insert(&w.stream, w);
        }
        for (stream, w) in latest {
            if let Some(cache) = self.caches.get_mut(stream) {
                let base = w.first_frame_position();
                let keep_from = base - base % stride;
                cache.audio = cache.audio.split_off(&keep_from);
                let keep: Vec<usize> = w.frames.iter().map(frame_key).collect();
                cache.images.retain(|k, _| keep.contains(k));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_across_the_lead_and_the_audio() {
        // Sample values are their position in lead + audio.
        let w = Window {
            stream: Arc::from("s"),
            seq: 0,
            start_sample: 0,
            start_wall: SystemTime::now(),
            end_wall: SystemTime::now(),
            audio_lead: (0..24_000).map(|i| i as f32).collect(),
            audio: (24_000..504_000).map(|i| i as f32).collect(),
            frames: Vec::new(),
            filled_samples: 0,
            filled_frames: 0,
            ready_at: Instant::now(),
        };
        let frames = Engine::window_frames(&w);
        assert_eq!(frames.len(), 96 * FRAME_SAMPLES);
        for i in [0usize, 4, 5, 6, 95] {
            let frame = &frames[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES];
            let expected: Vec<f32> = (i * FRAME_HOP..i * FRAME_HOP + FRAME_SAMPLES)
                .map(|v| v as f32)
                .collect();
            assert_eq!(frame, &expected[..], "frame {i}");
        }
    }
}
