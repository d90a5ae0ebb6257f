//! A recording's model inputs, decoded through the live capture and window code (non-live,
//! as fast as the decoder goes) and kept in an on-disk cache: for each 10 s clip the
//! OpenL3 embeddings (96 × E) and the 10 frames (224 × 224 RGB). A TAU clip gives its first
//! window; a folder-per-label file every window a clip length apart. Keys cover the files'
//! contents and everything the features depend on (front end, OpenL3 weights, cutting), so
//! a cache is reused across epochs and runs and never serves stale features.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use tch::{Kind, Tensor};

use super::dataset::Clip;
use crate::capture::decode::{FILE_PIPELINE, decode, file_uri};
use crate::features::{AUDIO_FRAME_SAMPLES, WINDOW_SECONDS, audio, image};
use crate::model::Model;
use crate::support::fnv1a;
use crate::window::Window;

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

/// The features of a decoded window: OpenL3 embeddings (no gradient) and the frames.
pub fn window_features(model: &Model, window: &Window) -> ClipFeatures {
    let frames = audio::window_frames(&window.audio_lead, &window.audio);
    let audio = tch::no_grad(|| {
        let input = Tensor::from_slice(&frames)
            .view([-1, AUDIO_FRAME_SAMPLES as i64])
            .to_device(model.vs.device());
        model
            .net
            .embed_audio_frames(&input)
            .to_device(tch::Device::Cpu)
    });
    let frames = image::stack_frames(window.frames.iter().map(|f| &f[..]));
    ClipFeatures { audio, frames }
}

/// The frozen image branch's embeddings of a clip's frames: (10, dim).
pub fn image_embeddings(model: &Model, frames: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let images = image::images(frames, model.vs.device());
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

/// One recording's entry in the on-disk cache: its clips' tensors stacked in one
/// safetensors file. Only the header is kept; a clip's rows are read from the file when a
/// batch needs them, so memory does not grow with the dataset (and the page cache, not the
/// process, holds what the disk has read).
#[derive(Debug)]
pub struct Entry {
    path: PathBuf,
    clips: usize,
    tensors: HashMap<String, Slot>,
}

/// Where a stacked tensor lies in an entry: dtype, shape of one clip's part, the file
/// offset of clip 0 and the bytes per clip.
#[derive(Debug, Clone)]
struct Slot {
    kind: Kind,
    row_shape: Vec<i64>,
    offset: u64,
    row_bytes: usize,
}

#[derive(Deserialize)]
struct HeaderTensor {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

impl Entry {
    /// Read an entry's header; every tensor must stack the same number of clips.
    pub fn open(path: &Path) -> Result<Entry, String> {
        let bad = |reason: String| format!("{}: {reason}", path.display());
        let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut length = [0u8; 8];
        file.read_exact(&mut length)
            .map_err(|e| bad(e.to_string()))?;
        let length = u64::from_le_bytes(length);
        if length > 1 << 24 {
            return Err(bad(format!(
                "a header of {length} bytes: not a cache entry"
            )));
        }
        let mut header = vec![0u8; length as usize];
        file.read_exact(&mut header)
            .map_err(|e| bad(e.to_string()))?;
        let mut header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
        header.remove("__metadata__");
        let size = file.metadata().map_err(|e| bad(e.to_string()))?.len();
        let data = 8 + length;
        let mut tensors = HashMap::new();
        let mut clips = None;
        for (name, value) in header {
            let t: HeaderTensor = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
            let (kind, width) = match t.dtype.as_str() {
                "F32" => (Kind::Float, 4),
                "U8" => (Kind::Uint8, 1),
                other => return Err(bad(format!("tensor {name} is {other}"))),
            };
            let Some((&n, row)) = t.shape.split_first() else {
                return Err(bad(format!("tensor {name} has no clip axis")));
            };
            let row_bytes = row.iter().product::<usize>() * width;
            let [start, end] = t.data_offsets;
            if end - start != n * row_bytes || data + end as u64 > size {
                return Err(bad(format!("tensor {name} is cut short")));
            }
            if clips.is_some_and(|c| c != n) {
                return Err(bad("tensors of different clip counts".into()));
            }
            clips = Some(n);
            let row_shape = row.iter().map(|&d| d as i64).collect();
            let offset = data + start as u64;
            tensors.insert(
                name,
                Slot {
                    kind,
                    row_shape,
                    offset,
                    row_bytes,
                },
            );
        }
        Ok(Entry {
            path: path.to_path_buf(),
            clips: clips.unwrap_or(0),
            tensors,
        })
    }

    /// Clips stacked in the entry.
    pub fn clips(&self) -> usize {
        self.clips
    }

    fn has(&self, names: &[&str]) -> bool {
        names.iter().all(|n| self.tensors.contains_key(*n))
    }

    /// Clip `clip`'s part of tensor `name`, read from the file.
    pub fn read(&self, name: &str, clip: usize) -> Result<Tensor, String> {
        use std::os::unix::fs::FileExt;
        let bad = |reason: String| format!("{}: {reason}", self.path.display());
        let slot = self
            .tensors
            .get(name)
            .ok_or_else(|| bad(format!("no tensor {name}")))?;
        if clip >= self.clips {
            return Err(bad(format!("no clip {clip} (of {})", self.clips)));
        }
        let file = std::fs::File::open(&self.path).map_err(|e| bad(e.to_string()))?;
        let mut bytes = vec![0u8; slot.row_bytes];
        file.read_exact_at(&mut bytes, slot.offset + (clip * slot.row_bytes) as u64)
            .map_err(|e| bad(format!("cannot read clip {clip}: {e}")))?;
        Ok(Tensor::from_data_size(&bytes, &slot.row_shape, slot.kind))
    }
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
        // "v3": entries hold every clip of a recording, stacked; frames stretched whole
        // (v2 caches hold letterboxed frames).
        let settings = fnv1a(
            format!(
                "v3 {:?} {}",
                model.features,
                crate::capture::video_tail(false)
            )
            .as_bytes(),
        ) ^ weights_hash(model, "openl3.");
        Ok(FeatureCache {
            dir: dir.to_path_buf(),
            settings,
            image_branch: weights_hash(model, "video."),
            hits: 0,
            computed: 0,
        })
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

    /// The recording's entry — OpenL3 embeddings `audio` (clips, 96, E) float and frames
    /// `frames` (clips, 10, 224, 224, 3) uint8 — from the cache, or decoded, computed and
    /// stored.
    pub fn get(&mut self, model: &Model, clip: &Clip) -> Result<Arc<Entry>, String> {
        let path = self.dir.join(format!("{}.safetensors", self.key(clip)?));
        if let Some(entry) = Entry::open(&path)
            .ok()
            .filter(|e| e.has(&["audio", "frames"]))
        {
            self.hits += 1;
            return Ok(Arc::new(entry));
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
        Entry::open(&path).map(Arc::new)
    }

    /// The frozen image branch's embeddings `images` (clips, 10, dim) of an entry's
    /// frames, cached beside it and keyed also by the image branch's weights: a rerun with
    /// the same base model skips the ResNet.
    pub fn image_embeddings(
        &mut self,
        model: &Model,
        clip: &Clip,
        features: &Entry,
    ) -> Result<Arc<Entry>, String> {
        let path = self.dir.join(format!(
            "{}-images-{:016x}.safetensors",
            self.key(clip)?,
            self.image_branch
        ));
        if let Some(entry) = Entry::open(&path)
            .ok()
            .filter(|e| e.has(&["images"]) && e.clips() == features.clips())
        {
            return Ok(Arc::new(entry));
        }
        let images = (0..features.clips())
            .map(|i| Ok(image_embeddings(model, &features.read("frames", i)?)))
            .collect::<Result<Vec<Tensor>, String>>()?;
        write_entry(&path, &[("images", &Tensor::stack(&images, 0))])?;
        Entry::open(&path).map(Arc::new)
    }
}

/// Write a cache entry whole (a temporary file renamed into place).
fn write_entry(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<(), String> {
    let temporary = path.with_extension("partial");
    Tensor::write_safetensors(tensors, &temporary)
        .and_then(|()| std::fs::rename(&temporary, path).map_err(Into::into))
        .map_err(|e| format!("{}: cannot write the feature cache: {e}", path.display()))
}
