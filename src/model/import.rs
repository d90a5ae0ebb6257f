//! Importing public PyTorch weights into an avscene model file.
//!
//! Inputs are state dicts under their original names, as PyTorch `.pth` files (zip or
//! legacy `torch.save`, read by [`super::pth`]) or as safetensors:
//! - torchvision's ResNet50 ImageNet weights (`conv1.weight`, `layer1.0.conv1.weight`, …;
//!   `fc.*` is dropped) → `video.resnet.*`;
//! - torchopenl3's `mel256`/`env`/512 model (`batch_normalization_1.*`, `conv2d_1.*`, …,
//!   `audio_embedding_layer.*`, optionally `speclayer.*`) → `openl3.*`;
//! - a whole dual-stream checkpoint from the authors' code (their `Mixed_model`'s state
//!   dict: `audio_net.*`, `video.*`, `encoder.*`, `classifier.1.*`), whose names avscene
//!   shares; its ResNet still carries torchvision's unused ImageNet head
//!   (`video.resnet.fc.*`), which is dropped and reported.
//!
//! Every imported tensor must exist in the architecture with the same shape; parts no
//! input covers keep their fresh initialisation and are reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use tch::{Kind, Tensor};

use super::pth::{PthError, read_state_dict};
use super::{Model, ModelFileError};

/// Which public checkpoint a file is, deciding how its names map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Resnet,
    OpenL3,
    DualStream,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Resnet => "resnet",
            Source::OpenL3 => "openl3",
            Source::DualStream => "dual-stream",
        }
    }

    /// Where a tensor of this checkpoint goes in avscene's model.
    fn map(self, name: &str) -> Mapped {
        if name.ends_with("num_batches_tracked") {
            return Mapped::Skip; // BatchNorm step counters: not weights
        }
        let name = name.strip_prefix("module.").unwrap_or(name); // DataParallel checkpoints
        match self {
            Source::Resnet => {
                let bare = name.strip_prefix("video.resnet.").unwrap_or(name);
                if bare.starts_with("fc.") {
                    Mapped::Unused // torchvision's ImageNet classifier
                } else {
                    Mapped::To(format!("video.resnet.{bare}"))
                }
            }
            Source::OpenL3 => Mapped::To(format!(
                "openl3.{}",
                name.strip_prefix("openl3.").unwrap_or(name)
            )),
            Source::DualStream if name.starts_with("video.resnet.fc.") => Mapped::Unused,
            Source::DualStream => Mapped::To(name.to_string()),
        }
    }
}

/// What becomes of a checkpoint's tensor.
enum Mapped {
    To(String),
    /// A weight the architecture has no use for (an ImageNet classifier): reported.
    Unused,
    /// Not a weight.
    Skip,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: cannot read: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a safetensors file ({reason})", .file.display())]
    NotSafetensors { file: PathBuf, reason: String },
    #[error("{}: not a PyTorch checkpoint (torch.save's zip or legacy format) nor a safetensors file ({reason})", .file.display())]
    NotACheckpoint { file: PathBuf, reason: String },
    #[error(transparent)]
    Pth(#[from] PthError),
    #[error("{} ({kind} weights): tensor `{name}` maps to `{target}`, which this architecture does not have", .file.display(), kind = .checkpoint.label())]
    UnknownTensor {
        file: PathBuf,
        checkpoint: Source,
        name: String,
        target: String,
    },
    #[error("{}: tensor `{name}` has shape {found:?}, `{target}` needs {expected:?}", .file.display())]
    Shape {
        file: PathBuf,
        name: String,
        target: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("{}: tensor `{name}` is {found:?}; only float32, float16, bfloat16 and float64 weights import", .file.display())]
    Dtype {
        file: PathBuf,
        name: String,
        found: Kind,
    },
    #[error("{}: no tensors imported from it (is it the right kind of checkpoint?)", .file.display())]
    Empty { file: PathBuf },
    #[error(transparent)]
    Save(#[from] ModelFileError),
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Tensors copied, per input file.
    pub imported: BTreeMap<String, usize>,
    /// Weights of the inputs the model has no use for (ImageNet classifiers), per file.
    pub unused: BTreeMap<String, Vec<String>>,
    /// Top-level parts with variables no input covered (still freshly initialised).
    pub untouched_parts: Vec<String>,
}

/// A checkpoint's tensors by name: a PyTorch `.pth` (zip or legacy), else safetensors.
pub fn read_checkpoint(file: &Path) -> Result<Vec<(String, Tensor)>, ImportError> {
    let mut head = [0u8; 4];
    let read = |e| ImportError::Read {
        file: file.to_path_buf(),
        source: e,
    };
    let n = std::fs::File::open(file)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(read)?;
    if head[..n].starts_with(b"PK\x03\x04") {
        return Ok(read_state_dict(file)?);
    }
    let bytes = std::fs::read(file).map_err(read)?;
    let tensors = match SafeTensors::deserialize(&bytes) {
        Ok(tensors) => tensors,
        // A pickle (the legacy torch.save format) starts with PROTO.
        Err(_) if head[0] == 0x80 => return Ok(read_state_dict(file)?),
        Err(e) => {
            let start: String = String::from_utf8_lossy(&bytes[..bytes.len().min(24)])
                .chars()
                .map(|c| if c.is_control() { '.' } else { c })
                .collect();
            return Err(ImportError::NotACheckpoint {
                file: file.to_path_buf(),
                reason: format!("safetensors: {e}; it begins \"{start}\""),
            });
        }
    };
    let mut out = Vec::new();
    for (name, view) in tensors.tensors() {
        let kind = match view.dtype() {
            safetensors::Dtype::F32 => Kind::Float,
            safetensors::Dtype::F16 => Kind::Half,
            safetensors::Dtype::BF16 => Kind::BFloat16,
            safetensors::Dtype::F64 => Kind::Double,
            safetensors::Dtype::I64 => Kind::Int64,
            other => {
                return Err(ImportError::NotSafetensors {
                    file: file.to_path_buf(),
                    reason: format!("tensor `{name}` is {other:?}"),
                });
            }
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.push((name, Tensor::from_data_size(view.data(), &shape, kind)));
    }
    Ok(out)
}

/// What one file gave: the variables it set, and its tensors left unused.
#[derive(Debug, Default)]
pub struct Imported {
    pub copied: Vec<String>,
    pub unused: Vec<String>,
}

/// Copy every tensor of `file` into `model` under `source`'s naming.
pub fn import_file(
    model: &mut Model,
    file: &Path,
    source: Source,
) -> Result<Imported, ImportError> {
    let mut tensors = read_checkpoint(file)?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let variables = model.vs.variables();
    let mut imported = Imported::default();
    for (name, value) in tensors {
        let name = name.as_str();
        let target = match source.map(name) {
            Mapped::To(target) => target,
            Mapped::Unused => {
                imported.unused.push(name.to_string());
                continue;
            }
            Mapped::Skip => continue,
        };
        let Some(var) = variables.get(&target) else {
            return Err(ImportError::UnknownTensor {
                file: file.to_path_buf(),
                checkpoint: source,
                name: name.into(),
                target,
            });
        };
        let found = value.size();
        if found != var.size() {
            return Err(ImportError::Shape {
                file: file.to_path_buf(),
                name: name.into(),
                target,
                expected: var.size(),
                found,
            });
        }
        if !matches!(
            value.kind(),
            Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
        ) {
            return Err(ImportError::Dtype {
                file: file.to_path_buf(),
                name: name.into(),
                found: value.kind(),
            });
        }
        let value = value.to_kind(Kind::Float);
        tch::no_grad(|| var.shallow_clone().copy_(&value));
        imported.copied.push(target);
    }
    if imported.copied.is_empty() {
        return Err(ImportError::Empty {
            file: file.to_path_buf(),
        });
    }
    Ok(imported)
}

/// Import each `(file, source)` into `model` in order (later files win), record the
/// provenance, and say which parts were left as initialised.
pub fn import_all(
    model: &mut Model,
    inputs: &[(PathBuf, Source)],
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let mut covered = std::collections::BTreeSet::new();
    for (file, source) in inputs {
        let Imported { copied, unused } = import_file(model, file, *source)?;
        let name = file.display().to_string();
        report.imported.insert(name.clone(), copied.len());
        model.provenance.details.insert(
            format!("imported_{}", source.label()),
            serde_json::json!({ "file": name, "tensors": copied.len(), "unused": unused }),
        );
        if !unused.is_empty() {
            report.unused.insert(name, unused);
        }
        covered.extend(copied);
    }
    let mut parts = BTreeMap::<String, bool>::new();
    for (name, var) in model.vs.variables() {
        if !var.requires_grad() && name.contains("speclayer") {
            continue; // computed front-end buffers are complete without an import
        }
        let part = part_of(&name);
        let entry = parts.entry(part).or_insert(false);
        *entry |= !covered.contains(&name);
    }
    report.untouched_parts = parts
        .into_iter()
        .filter(|(_, missing)| *missing)
        .map(|(p, _)| p)
        .collect();
    model.provenance.source = "import-weights".into();
    model.id = format!("{}-imported", model.spec.profile);
    Ok(report)
}

/// A readable name for the part a variable belongs to.
fn part_of(name: &str) -> String {
    if name.starts_with("video.resnet.") {
        "image backbone (video.resnet)".into()
    } else if name.starts_with("video.") {
        "image branch head (video.fc)".into()
    } else if name.starts_with("openl3.") {
        "OpenL3 (openl3)".into()
    } else if name.starts_with("audio_net.") {
        "audio branch (audio_net)".into()
    } else {
        "fusion and classifier (encoder, classifier)".into()
    }
}
