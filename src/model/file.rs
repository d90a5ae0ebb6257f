//! Model files: safetensors holding every variable under its PyTorch-style name, plus
//! metadata — format and version, the architecture (`spec`), the feature settings and the
//! training provenance. Loading checks every tensor's name, type and shape and says which
//! one is wrong; a file that is not safetensors, or is cut short, is refused with the
//! reason, never a panic.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn};

use super::{Model, ModelSpec, SceneNet};
use crate::features::FeatureSpec;
use crate::support::fnv1a;

/// `format` metadata value of avscene model files.
pub const FORMAT: &str = "avscene-model";
/// Version of the layout; bumped when names or metadata change incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("{}: cannot read the model file: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a safetensors model file ({reason}); is it truncated or of another format?", .file.display())]
    NotSafetensors { file: PathBuf, reason: String },
    #[error("{}: a safetensors file but not an avscene model ({reason}); convert PyTorch weights with `avscene import-weights`", .file.display())]
    NotAvscene { file: PathBuf, reason: String },
    #[error("{}: model format version {found}, this avscene reads version {FORMAT_VERSION}", .file.display())]
    Version { file: PathBuf, found: String },
    #[error("{}: metadata `{key}` is invalid: {reason}", .file.display())]
    Metadata {
        file: PathBuf,
        key: &'static str,
        reason: String,
    },
    #[error("{}: tensor `{name}` is missing", .file.display())]
    MissingTensor { file: PathBuf, name: String },
    #[error("{}: tensor `{name}` is not part of this architecture", .file.display())]
    UnexpectedTensor { file: PathBuf, name: String },
    #[error("{}: tensor `{name}` has shape {found:?}, the architecture expects {expected:?}", .file.display())]
    Shape {
        file: PathBuf,
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("{}: tensor `{name}` is {found:?}, expected F32", .file.display())]
    Dtype {
        file: PathBuf,
        name: String,
        found: Dtype,
    },
    #[error("{}: cannot write the model file: {reason}", .file.display())]
    Write { file: PathBuf, reason: String },
}

/// Where a model's weights came from, kept in its file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `random-init`, `import-weights`, `train`, …
    pub source: String,
    /// The avscene version that wrote the file.
    pub avscene_version: String,
    /// Seconds since the Unix epoch when the file was written.
    pub created_unix: u64,
    /// Anything else worth keeping: imported checkpoints, base model, dataset, settings.
    #[serde(default)]
    pub details: BTreeMap<String, serde_json::Value>,
}

impl Provenance {
    pub fn new(source: &str) -> Provenance {
        let created_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Provenance {
            source: source.into(),
            avscene_version: env!("CARGO_PKG_VERSION").into(),
            created_unix,
            details: BTreeMap::new(),
        }
    }
}

/// A variable's data as little-endian f32 bytes.
pub(crate) fn f32_bytes(tensor: &Tensor) -> Vec<u8> {
    let flat = tensor
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    let values: Vec<f32> = Vec::<f32>::try_from(&flat).unwrap_or_default();
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Write named tensors and metadata to `file` atomically (a temporary file renamed into
/// place), so a crash never leaves half a model where a good one was.
pub(crate) fn write_safetensors(
    file: &Path,
    tensors: &BTreeMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<(), ModelFileError> {
    let write_error = |reason: String| ModelFileError::Write {
        file: file.to_path_buf(),
        reason,
    };
    let data: Vec<(String, Vec<i64>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| (name.clone(), t.size(), f32_bytes(t)))
        .collect();
    let mut views = Vec::with_capacity(data.len());
    for (name, shape, bytes) in &data {
        let shape = shape.iter().map(|&d| d as usize).collect();
        let view = TensorView::new(Dtype::F32, shape, bytes)
            .map_err(|e| write_error(format!("{name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("model")
    ));
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| write_error(e.to_string()))?;
    std::fs::rename(&tmp, file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_error(e.to_string())
    })
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

impl Model {
    /// Save every variable with the model's metadata.
    pub fn save(&self, file: &Path) -> Result<(), ModelFileError> {
        let tensors: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("spec".to_string(), json(&self.spec)),
            ("features".to_string(), json(&self.features)),
            ("provenance".to_string(), json(&self.provenance)),
        ]);
        write_safetensors(file, &tensors, metadata)
    }

    /// Load a model file onto `device`, checking everything against the architecture its
    /// metadata describes.
    pub fn load(file: &Path, device: Device) -> Result<Model, ModelFileError> {
        let path = file.to_path_buf();
        let bytes = std::fs::read(file).map_err(|source| ModelFileError::Read {
            file: path.clone(),
            source,
        })?;
        let not_st = |e: safetensors::SafeTensorError| ModelFileError::NotSafetensors {
            file: path.clone(),
            reason: e.to_string(),
        };
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(not_st)?;
        let tensors = SafeTensors::deserialize(&bytes).map_err(not_st)?;
        let meta = header.metadata().clone().unwrap_or_default();

        match meta.get("format") {
            Some(f) if f == FORMAT => {}
            Some(other) => {
                return Err(ModelFileError::NotAvscene {
                    file: path,
                    reason: format!("its format is '{other}'"),
                });
            }
            None => {
                return Err(ModelFileError::NotAvscene {
                    file: path,
                    reason: "no `format` metadata".into(),
                });
            }
        }
        let version = meta.get("format_version").cloned().unwrap_or_default();
        if version != FORMAT_VERSION.to_string() {
            return Err(ModelFileError::Version {
                file: path,
                found: version,
            });
        }
        let spec: ModelSpec = parse_meta(&meta, "spec", &path)?;
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(ModelFileError::Metadata {
                file: path,
                key: "spec",
                reason: problems.join("; "),
            });
        }
        let features: FeatureSpec = parse_meta(&meta, "features", &path)?;
        if features != FeatureSpec::default() {
            return Err(ModelFileError::Metadata {
                file: path,
                key: "features",
                reason: format!("this avscene implements {:?}", FeatureSpec::default()),
            });
        }
        let provenance: Provenance = match meta.get("provenance") {
            Some(_) => parse_meta(&meta, "provenance", &path)?,
            None => Provenance::default(),
        };

        let vs = nn::VarStore::new(device);
        let net = SceneNet::new(&vs.root(), &spec, &features);
        copy_into(&vs, &tensors, &path)?;
        let id = format!("{}-{:08x}", spec.profile, fnv1a(&bytes) as u32);
        Ok(Model {
            vs,
            net,
            spec,
            features,
            provenance,
            id,
        })
    }
}

fn parse_meta<T: serde::de::DeserializeOwned>(
    meta: &HashMap<String, String>,
    key: &'static str,
    file: &Path,
) -> Result<T, ModelFileError> {
    let text = meta.get(key).ok_or_else(|| ModelFileError::Metadata {
        file: file.to_path_buf(),
        key,
        reason: "missing".into(),
    })?;
    serde_json::from_str(text).map_err(|e| ModelFileError::Metadata {
        file: file.to_path_buf(),
        key,
        reason: e.to_string(),
    })
}

/// Copy every tensor of the file into the matching variable, after checking that the two
/// sets of names are equal and every type and shape matches.
pub(crate) fn copy_into(
    vs: &nn::VarStore,
    tensors: &SafeTensors,
    file: &Path,
) -> Result<(), ModelFileError> {
    let variables = vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    for name in names {
        let var = &variables[name];
        let view = tensors
            .tensor(name)
            .map_err(|_| ModelFileError::MissingTensor {
                file: file.to_path_buf(),
                name: name.clone(),
            })?;
        let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if found != var.size() {
            return Err(ModelFileError::Shape {
                file: file.to_path_buf(),
                name: name.clone(),
                expected: var.size(),
                found,
            });
        }
        if view.dtype() != Dtype::F32 {
            return Err(ModelFileError::Dtype {
                file: file.to_path_buf(),
                name: name.clone(),
                found: view.dtype(),
            });
        }
        let source = Tensor::from_data_size(view.data(), &found, Kind::Float);
        tch::no_grad(|| var.shallow_clone().copy_(&source));
    }
    let mut extra: Vec<&str> = tensors
        .names()
        .into_iter()
        .filter(|n| !variables.contains_key(*n))
        .collect();
    extra.sort();
    if let Some(name) = extra.first() {
        return Err(ModelFileError::UnexpectedTensor {
            file: file.to_path_buf(),
            name: name.to_string(),
        });
    }
    Ok(())
}
