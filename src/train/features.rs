//! A recording's model inputs, decoded through the live capture and window code (non-live,
//! as fast as the decoder goes) and kept in an on-disk cache: for each 10 s clip the
//! OpenL3 embeddings (96 × E) and the 10 frames (224 × 224 RGB). A TAU clip gives its first
//! window; a folder-per-label file every window a clip length apart. Keys cover the files'
//! contents and everything the features depend on (front end, OpenL3 weights, cutting), so
//! a cache is reused across epochs and runs and never serves stale features.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};

use super::dataset::{Clip, fnv1a};
use crate::capture::{CaptureConfig, PipelineFile, StreamSpec, StreamState, spawn, window_queue};
use crate::infer::window_audio_frames;
use crate::model::Model;
use crate::window::{FRAME_SIDE, WINDOW_SECONDS, Window, WindowConfig};

/// The built-in pipeline of a dataset clip: the picture from the video file, the sound
/// from the audio file (TAU ships both; the video's own sound track is ignored).
const CLIP_PIPELINE: &str = r#"
description = "dataset clip: video file + audio file"
live = false
loop = false
realtime = false
[source]
shared = "uridecodebin uri=${video_uri} name=v  uridecodebin uri=${audio_uri} name=a"
video = "v."
audio = "a."
"#;

/// A clip's inputs: OpenL3 embeddings (96, E) float and frames (10, 224, 224, 3) uint8.
pub struct ClipFeatures {
    pub audio: Tensor,
    pub frames: Tensor,
}

/// A file's `file://` URI, for GStreamer; the error names the file.
pub(crate) fn file_uri(path: &Path) -> Result<String, String> {
    let absolute = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    gstreamer::glib::filename_to_uri(&absolute, None)
        .map(|u| u.to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A media file with sound and picture in one container (mp4, mkv, webm, …).
const FILE_PIPELINE: &str = r#"
description = "media file"
live = false
loop = false
realtime = false
[source]
shared = "uridecodebin uri=${uri} name=src"
video = "src."
audio = "src."
"#;

/// Decode a recording through the capture path: a TAU clip into its first full window, a
/// file to cut into consecutive non-overlapping windows.
pub fn decode_recording(clip: &Clip) -> Result<Vec<Window>, String> {
    let (limit, hop_s) = if clip.cut {
        (None, WINDOW_SECONDS)
    } else {
        (Some(1), 1.0)
    };
    let windows = if clip.audio == clip.video {
        decode(
            FILE_PIPELINE,
            &[("uri", file_uri(&clip.video)?)],
            limit,
            hop_s,
        )
    } else {
        let params = [
            ("video_uri", file_uri(&clip.video)?),
            ("audio_uri", file_uri(&clip.audio)?),
        ];
        decode(CLIP_PIPELINE, &params, limit, hop_s)
    }?;
    tracing::debug!("{}: {} window(s)", clip.name(), windows.len());
    Ok(windows)
}

/// Decode a media file into all its 10 s windows (a second apart).
pub fn decode_file(file: &Path) -> Result<Vec<Window>, String> {
    decode(FILE_PIPELINE, &[("uri", file_uri(file)?)], None, 1.0)
}

/// Run a built-in pipeline file through the capture path until `limit` windows or the
/// end; at least one window, or the reason there is none.
fn decode(
    pipeline: &str,
    params: &[(&str, String)],
    limit: Option<usize>,
    hop_s: f64,
) -> Result<Vec<Window>, String> {
    let file: PipelineFile = toml::from_str(pipeline).map_err(|e| e.to_string())?;
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let launch = file.launch_description(&params).map_err(|e| e.join("; "))?;
    let spec = StreamSpec {
        name: "file".into(),
        pipeline_file: PathBuf::from("(built in)"),
        description: file.description.clone(),
        live: false,
        looping: false,
        launch,
    };
    let (tx, rx) = window_queue(1024);
    let windows = WindowConfig {
        hop_s,
        ..WindowConfig::default()
    };
    let handle = spawn(spec, CaptureConfig::default(), windows, tx);
    // A long file may decode for many minutes: give up only when no window comes for long.
    const STALL: Duration = Duration::from_secs(300);
    let mut until = Instant::now() + STALL;
    let mut windows = Vec::new();
    let outcome = loop {
        while let Ok(window) = rx.try_recv() {
            windows.push(window);
            until = Instant::now() + STALL;
        }
        if limit.is_some_and(|l| windows.len() >= l) {
            break Ok(());
        }
        match handle.stats.state() {
            StreamState::Backoff { reason } => break Err(format!("cannot decode: {reason}")),
            StreamState::Ended if rx.is_empty() => break Ok(()),
            _ if Instant::now() > until => {
                break Err(format!(
                    "decoding stalled: no 10 s window in {} s",
                    STALL.as_secs()
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let last_error = handle.stats.last_error();
    handle.stop();
    outcome?;
    if windows.is_empty() {
        return Err(match last_error {
            Some(e) => format!("cannot decode: {e}"),
            None => "shorter than 10 s: no full window".to_string(),
        });
    }
    Ok(windows)
}

/// The features of a decoded window: OpenL3 embeddings (no gradient) and the frames.
pub fn window_features(model: &Model, window: &Window) -> ClipFeatures {
    let device = model.vs.device();
    let frames: Vec<f32> = window_audio_frames(window);
    let n = (frames.len() / model.features.frame_samples as usize) as i64;
    let audio = tch::no_grad(|| {
        let input = Tensor::from_slice(&frames)
            .view([n, model.features.frame_samples])
            .to_device(device);
        let chunks: Vec<Tensor> = input
            .split(16, 0)
            .iter()
            .map(|c| model.net.embed_audio_frames(c))
            .collect();
        Tensor::cat(&chunks, 0).to_device(tch::Device::Cpu)
    });
    let side = FRAME_SIDE as i64;
    let mut bytes = Vec::with_capacity(window.frames.len() * window.frames[0].len());
    for f in &window.frames {
        bytes.extend_from_slice(f);
    }
    let frames = Tensor::from_slice(&bytes).view([window.frames.len() as i64, side, side, 3]);
    ClipFeatures { audio, frames }
}

/// Frames (…, 10, 224, 224, 3) uint8 → normalised (…, 10, 3, 224, 224) float on `device`.
pub fn frames_to_images(model: &Model, frames: &Tensor) -> Tensor {
    let images = frames
        .to_device(model.vs.device())
        .to_kind(Kind::Float)
        .permute([0, 1, 4, 2, 3])
        / 255.0;
    crate::features::image::normalise(&images, &model.features)
}

/// The frozen image branch's embeddings of a clip's frames: (10, dim).
pub fn image_embeddings(model: &Model, frames: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let images = frames_to_images(model, &frames.unsqueeze(0)).squeeze_dim(0);
        model
            .net
            .embed_images(&images, false)
            .to_device(tch::Device::Cpu)
    })
}

/// A fingerprint of the model's variables under `prefix` (names and values).
fn weights_hash(model: &Model, prefix: &str) -> u64 {
    let mut named: Vec<(String, Tensor)> = model
        .vs
        .variables()
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hash = fnv1a(prefix.as_bytes());
    for (name, tensor) in named {
        let values: Vec<f32> =
            Vec::try_from(tensor.to_kind(Kind::Float).flatten(0, -1)).unwrap_or_default();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        hash ^= fnv1a(name.as_bytes()).rotate_left(7) ^ fnv1a(&bytes);
        hash = hash.rotate_left(13);
    }
    hash
}

/// The on-disk feature cache.
pub struct FeatureCache {
    dir: PathBuf,
    /// Hash of what the features depend on besides the files.
    settings: u64,
    /// Hash of the image branch's weights, for its cached embeddings.
    image_branch: u64,
    pub hits: u64,
    pub computed: u64,
}

impl FeatureCache {
    pub fn new(dir: &Path, model: &Model) -> Result<FeatureCache, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
        // "v2": entries hold every clip of a recording, stacked.
        let settings =
            fnv1a(format!("v2 {:?}", model.features).as_bytes()) ^ weights_hash(model, "openl3.");
        Ok(FeatureCache {
            dir: dir.to_path_buf(),
            settings,
            image_branch: weights_hash(model, "video."),
            hits: 0,
            computed: 0,
        })
    }

    /// The frozen image branch's embeddings of a recording's clips (one (10, dim) tensor
    /// per clip, from `features`' frames), cached beside the features and keyed also by the
    /// image branch's weights: a rerun with the same base model skips the ResNet.
    pub fn image_embeddings(
        &mut self,
        model: &Model,
        clip: &Clip,
        features: &[ClipFeatures],
    ) -> Result<Vec<Tensor>, String> {
        let path = self.dir.join(format!(
            "{}-images-{:016x}.safetensors",
            self.key(clip)?,
            self.image_branch
        ));
        if let Some(images) = Tensor::read_safetensors(&path)
            .ok()
            .and_then(|t| t.into_iter().find(|(n, _)| n == "images"))
            .map(|(_, t)| t)
            .filter(|t| t.size().first() == Some(&(features.len() as i64)))
        {
            return Ok((0..features.len() as i64).map(|i| images.get(i)).collect());
        }
        let images: Vec<Tensor> = features
            .iter()
            .map(|f| image_embeddings(model, &f.frames))
            .collect();
        write_entry(&path, &[("images", &Tensor::stack(&images, 0))])?;
        Ok(images)
    }

    fn key(&self, clip: &Clip) -> Result<String, String> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let video = fnv1a(&read(&clip.video)?);
        let audio = if clip.audio == clip.video {
            video
        } else {
            fnv1a(&read(&clip.audio)?)
        };
        let cut = if clip.cut { fnv1a(b"cut 10 s") } else { 0 };
        Ok(format!(
            "{:016x}",
            audio.rotate_left(21) ^ video ^ self.settings.rotate_left(42) ^ cut
        ))
    }

    /// The recording's clips' features from the cache, or decoded, computed and stored.
    pub fn get(&mut self, model: &Model, clip: &Clip) -> Result<Vec<ClipFeatures>, String> {
        let path = self.dir.join(format!("{}.safetensors", self.key(clip)?));
        if let Ok(tensors) = Tensor::read_safetensors(&path) {
            let find = |name: &str| {
                tensors
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.shallow_clone())
            };
            if let (Some(audio), Some(frames)) = (find("audio"), find("frames")) {
                self.hits += 1;
                // Stacked: (clips, 96, E) and (clips, 10, 224, 224, 3).
                let clips = audio.size()[0];
                return Ok((0..clips)
                    .map(|i| ClipFeatures {
                        audio: audio.get(i),
                        frames: frames.get(i),
                    })
                    .collect());
            }
        }
        let features: Vec<ClipFeatures> = decode_recording(clip)?
            .into_iter()
            .map(|window| window_features(model, &window))
            .collect();
        let stack = |part: fn(&ClipFeatures) -> &Tensor| {
            Tensor::stack(&features.iter().map(part).collect::<Vec<_>>(), 0)
        };
        write_entry(
            &path,
            &[
                ("audio", &stack(|f| &f.audio)),
                ("frames", &stack(|f| &f.frames)),
            ],
        )?;
        self.computed += 1;
        Ok(features)
    }
}

/// Write a cache entry whole (a temporary file renamed into place).
fn write_entry(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<(), String> {
    let temporary = path.with_extension("partial");
    Tensor::write_safetensors(tensors, &temporary)
        .and_then(|()| std::fs::rename(&temporary, path).map_err(Into::into))
        .map_err(|e| format!("{}: cannot write the feature cache: {e}", path.display()))
}
