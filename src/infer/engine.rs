//! The model applied to windows, either from scratch ("naive") or through a per-stream
//! cache of per-frame embeddings ("cached"): every OpenL3 frame (0.1 s grid) and every
//! image is encoded once and reused by the overlapping windows that contain it, so a 1 s
//! hop costs 10 OpenL3 frames, one image and a head pass instead of 96 + 10 encodings.
//! Both give the same result (the encoders are per-frame in eval mode).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tch::{Device, Kind, Tensor};

use super::{InferenceConfig, Precision};
use crate::features::{AUDIO_FRAME_SAMPLES, AUDIO_FRAMES, IMAGES, audio, image};
use crate::model::{Model, OpenL3, VideoNet};
use crate::support::argmax;
use crate::window::Window;

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
    /// The window's last frame (224×224 RGB), as the model saw it: for the status page.
    pub frame: Option<Arc<[u8]>>,
    /// The level of the window's last second of sound, dBFS.
    pub audio_dbfs: f32,
}

/// Cache traffic since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    pub audio_hits: u64,
    pub audio_encoded: u64,
    pub image_hits: u64,
    pub image_encoded: u64,
}

/// What a batch needs encoded.
#[derive(Default)]
struct Missing {
    /// (stream, OpenL3 frame position) …
    audio: Vec<(Arc<str>, u64)>,
    /// … and those frames' samples, flattened.
    samples: Vec<f32>,
    images: Vec<(Arc<str>, Arc<[u8]>)>,
}

/// One stream's cached embeddings.
#[derive(Default)]
struct StreamCache {
    /// The timeline and start of the stream's latest window.
    last_start: Option<(u64, u64)>,
    /// OpenL3 embedding (512) per frame position (0.1 s grid).
    audio: BTreeMap<u64, Tensor>,
    /// Image-branch embedding (dim) per frame, keyed by the frame's allocation (windows
    /// share frames by `Arc`; the entry holds the `Arc`, so the key stays unique).
    images: HashMap<usize, (Arc<[u8]>, Tensor)>,
}

fn frame_key(frame: &Arc<[u8]>) -> usize {
    Arc::as_ptr(frame) as *const u8 as usize
}

pub struct Engine {
    model: Model,
    device: Device,
    config: InferenceConfig,
    caches: HashMap<Arc<str>, StreamCache>,
    counts: CacheCounts,
}

/// Turn OpenL3's reduced-precision paths on or off as `precision` asks, or say why it
/// cannot (float32 runs then).
pub fn set_precision(openl3: &OpenL3, precision: Precision) -> Result<(), String> {
    let int8 = openl3.set_int8(precision == Precision::Int8);
    let bf16 = openl3.set_bf16(precision == Precision::Bfloat16);
    int8.map_err(|e| e.to_string())?;
    bf16.map_err(|e| e.to_string())?;
    Ok(())
}

/// The precision OpenL3's CPU path runs in now.
pub fn precision_in_use(openl3: &OpenL3) -> Precision {
    if openl3.uses_int8() {
        Precision::Int8
    } else if openl3.uses_bf16() {
        Precision::Bfloat16
    } else {
        Precision::Float32
    }
}

/// Turn the ResNet image trunk's bfloat16 path on or off as `precision` asks, or say why
/// it cannot (float32 runs then).
pub fn set_image_precision(video: &VideoNet, precision: Precision) -> Result<(), String> {
    let bf16 = video.set_bf16(precision == Precision::Bfloat16);
    bf16.map_err(|e| e.to_string())?;
    match precision {
        Precision::Int8 => Err("int8 is for OpenL3's stack only".into()),
        _ => Ok(()),
    }
}

/// The precision the image trunk's CPU path runs in now.
pub fn image_precision_in_use(video: &VideoNet) -> Precision {
    if video.uses_bf16() {
        Precision::Bfloat16
    } else {
        Precision::Float32
    }
}

/// Log what setting `key` to `precision` did to `encoder`, which ran in `was`.
fn announce(
    key: &str,
    encoder: &str,
    precision: Precision,
    was: Precision,
    set: Result<(), String>,
) {
    match set {
        Ok(()) if precision == Precision::Float32 || precision == was => {}
        Ok(()) => tracing::info!("{encoder} runs in {}: {key}", precision.describe()),
        Err(why) => tracing::warn!(
            "{key} = \"{}\": {why}; {encoder} runs in float32",
            precision.name()
        ),
    }
}

impl Engine {
    pub fn new(model: Model, config: &InferenceConfig) -> Engine {
        let device = model.vs.device();
        if model.net.openl3.set_fft(config.fast_stft) != config.fast_stft {
            tracing::warn!("inference.fast_stft: the model's DFT kernels are custom; using them");
        }
        let (openl3, precision) = (&model.net.openl3, config.openl3_precision);
        let was = precision_in_use(openl3);
        let set = set_precision(openl3, precision);
        announce("inference.openl3_precision", "OpenL3", precision, was, set);
        let (video, precision) = (&model.net.video, config.image_precision);
        let was = image_precision_in_use(video);
        let set = set_image_precision(video, precision);
        announce(
            "inference.image_precision",
            "the image trunk",
            precision,
            was,
            set,
        );
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

    /// The settings that would make this engine faster, least costly in accuracy first
    /// (the README's "Staying live on a small CPU"): the reduced precisions this CPU can
    /// run and the model does not use yet, the FFT, fewer OpenL3 frames, a smaller model.
    pub fn faster_settings(&self) -> Vec<&'static str> {
        let net = &self.model.net;
        let mut settings = Vec::new();
        if self.device == Device::Cpu {
            let bf16 = crate::support::cpu::bf16_instructions().is_some();
            match precision_in_use(&net.openl3) {
                Precision::Float32 if bf16 => {
                    settings.push("inference.openl3_precision = \"bfloat16\"")
                }
                Precision::Float32 | Precision::Bfloat16 => {
                    settings.push("inference.openl3_precision = \"int8\"")
                }
                Precision::Int8 => {}
            }
            if bf16 && image_precision_in_use(&net.video) == Precision::Float32 {
                settings.push("inference.image_precision = \"bfloat16\"");
            }
            if !net.openl3.uses_fft() {
                settings.push("inference.fast_stft = true");
            }
        }
        if self.config.audio_stride < 10 {
            settings.push("a larger inference.audio_stride");
        }
        settings.push("model.profile = \"small\" (with a model trained for it)");
        settings
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
            let (audio, pictures) = self.embeddings(windows);
            self.model
                .net
                .head_t(&audio, &pictures, false)
                .softmax(-1, Kind::Float)
                .to_device(Device::Cpu)
        });
        let compute = started.elapsed();
        let classes = &self.model.spec.classes;
        windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let probs: Vec<f32> =
                    Vec::<f32>::try_from(&probabilities.get(i as i64)).unwrap_or_default();
                let top = argmax(&probs);
                let confidence = probs.get(top).copied().unwrap_or(0.0);
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
                    frame: w.frames.last().cloned(),
                    audio_dbfs: w.last_second_dbfs(),
                }
            })
            .collect()
    }

    /// The model's inputs after its per-frame encoders, for a batch of windows: OpenL3
    /// embeddings (B, 96, 512) and image embeddings (B, 10, dim) — from the caches, or
    /// every window from scratch when the cache is off. Call inside `tch::no_grad`.
    pub fn embeddings(&mut self, windows: &[Window]) -> (Tensor, Tensor) {
        if self.config.cache {
            self.embeddings_cached(windows)
        } else {
            self.embeddings_naive(windows)
        }
    }

    fn encode_audio(&self, frames: &[f32]) -> Tensor {
        let all = Tensor::from_slice(frames)
            .view([-1, AUDIO_FRAME_SAMPLES as i64])
            .to_device(self.device);
        self.model.net.embed_audio_frames(&all)
    }

    fn encode_images(&self, frames: &[&Arc<[u8]>]) -> Tensor {
        let images = image::images(
            &image::stack_frames(frames.iter().map(|f| &f[..])),
            self.device,
        );
        self.model.net.embed_images(&images, false)
    }

    /// Every window from scratch: 96 OpenL3 frames and 10 images each.
    fn embeddings_naive(&self, windows: &[Window]) -> (Tensor, Tensor) {
        let b = windows.len() as i64;
        let frames: Vec<f32> = windows
            .iter()
            .flat_map(|w| audio::window_frames(&w.audio_lead, &w.audio))
            .collect();
        let audio = self
            .encode_audio(&frames)
            .view([b, AUDIO_FRAMES as i64, -1]);
        let images: Vec<&Arc<[u8]>> = windows.iter().flat_map(|w| w.frames.iter()).collect();
        let pictures = self.encode_images(&images).view([b, IMAGES as i64, -1]);
        (audio, pictures)
    }

    /// Encode what the caches lack, batched across the windows, then assemble the batch.
    fn embeddings_cached(&mut self, windows: &[Window]) -> (Tensor, Tensor) {
        let stride = self.config.audio_stride.max(1);
        // A stream on a new timeline (restarted, or resynchronised after a long gap)
        // starts a fresh cache: its frame positions mean other audio now.
        for w in windows {
            let cache = self.caches.entry(w.stream.clone()).or_default();
            let now = (w.timeline, w.start_sample);
            if cache
                .last_start
                .is_some_and(|(timeline, start)| timeline != w.timeline || w.start_sample < start)
            {
                *cache = StreamCache::default();
            }
            cache.last_start = Some(now);
        }
        let missing = self.missing(windows, stride);
        self.encode_missing(missing);
        let mut audio_rows = Vec::with_capacity(windows.len());
        let mut image_rows = Vec::with_capacity(windows.len());
        for w in windows {
            let cache = &self.caches[&w.stream];
            let base = w.first_frame_position();
            let audio: Vec<Tensor> = (0..AUDIO_FRAMES as u64)
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
        self.evict(windows, stride);
        (Tensor::stack(&audio_rows, 0), Tensor::stack(&image_rows, 0))
    }

    /// What the caches lack for these windows, deduplicated across the batch: OpenL3
    /// positions (on the stride's grid) with their samples, and images.
    fn missing(&mut self, windows: &[Window], stride: u64) -> Missing {
        let mut missing = Missing::default();
        for w in windows {
            let base = w.first_frame_position();
            let cache = &self.caches[&w.stream];
            for i in 0..AUDIO_FRAMES as u64 {
                let p = base + i;
                let q = p - p % stride;
                if cache.audio.contains_key(&q)
                    || missing.audio.iter().any(|(s, x)| *s == w.stream && *x == q)
                {
                    self.counts.audio_hits += 1;
                    continue;
                }
                let frame = (q - base) as usize;
                audio::push_frame(&w.audio_lead, &w.audio, frame, &mut missing.samples);
                missing.audio.push((w.stream.clone(), q));
            }
            for f in &w.frames {
                let known = cache.images.contains_key(&frame_key(f))
                    || missing
                        .images
                        .iter()
                        .any(|(s, m)| *s == w.stream && Arc::ptr_eq(m, f));
                if known {
                    self.counts.image_hits += 1;
                } else {
                    missing.images.push((w.stream.clone(), f.clone()));
                }
            }
        }
        missing
    }

    /// Encode what was missing, in one batch per branch, into the streams' caches.
    fn encode_missing(&mut self, missing: Missing) {
        if !missing.audio.is_empty() {
            let encoded = self.encode_audio(&missing.samples);
            self.counts.audio_encoded += missing.audio.len() as u64;
            for (i, (stream, q)) in missing.audio.into_iter().enumerate() {
                if let Some(cache) = self.caches.get_mut(&stream) {
                    cache.audio.insert(q, encoded.get(i as i64));
                }
            }
        }
        if !missing.images.is_empty() {
            let frames: Vec<&Arc<[u8]>> = missing.images.iter().map(|(_, f)| f).collect();
            let encoded = self.encode_images(&frames);
            self.counts.image_encoded += missing.images.len() as u64;
            for (i, (stream, frame)) in missing.images.into_iter().enumerate() {
                if let Some(cache) = self.caches.get_mut(&stream) {
                    let embedding = encoded.get(i as i64);
                    cache.images.insert(frame_key(&frame), (frame, embedding));
                }
            }
        }
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
