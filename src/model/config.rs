//! `[model]`: which model file to load and where to run it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::problems::Problems;

/// `[model]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Model file (`.safetensors`, from `avscene train` or `avscene import-weights`).
    /// Unset: a freshly initialised model of `profile` — it runs, but its labels mean
    /// nothing (a demo of the plumbing).
    pub path: Option<PathBuf>,
    /// `auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`.
    pub device: DeviceSpec,
    /// libtorch intra-op threads on CPU; 0 = one per core.
    pub threads: usize,
    /// Architecture of a freshly initialised model when `path` is unset: `full` (the
    /// paper's sizes) or `small` (narrow, for CPU demos and tests).
    pub profile: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: None,
            device: DeviceSpec::Auto,
            threads: 0,
            profile: "full".into(),
        }
    }
}

/// Profiles a fresh model can be built with.
pub const PROFILES: [&str; 2] = ["full", "small"];

impl ModelConfig {
    pub fn validate(&self, problems: &mut Problems) {
        if let Some(path) = &self.path {
            if !path.is_file() {
                problems.push(
                    "model.path",
                    format!("{} is not a readable file", path.display()),
                );
            }
        }
        if !PROFILES.contains(&self.profile.as_str()) {
            problems.push(
                "model.profile",
                format!(
                    "unknown profile '{}' (known: {})",
                    self.profile,
                    PROFILES.join(", ")
                ),
            );
        }
        if self.threads > 1024 {
            problems.push(
                "model.threads",
                format!(
                    "{} threads is not plausible (0 = one per core)",
                    self.threads
                ),
            );
        }
    }
}

impl ModelConfig {
    /// The model the configuration names, on its device — or, without `path`, a fresh
    /// one of `profile` (its labels are meaningless: a warning says so).
    pub fn build(&self) -> Result<super::Model, String> {
        let device = self.device.resolve()?;
        match &self.path {
            Some(path) => super::Model::load(path, device).map_err(|e| e.to_string()),
            None => {
                let spec = super::ModelSpec::profile(&self.profile)
                    .ok_or_else(|| format!("unknown profile '{}'", self.profile))?;
                tracing::warn!(
                    "no model.path: running a freshly initialised '{}' model — its labels are meaningless \
                     until you give it a trained model (see the README)",
                    self.profile
                );
                Ok(super::Model::fresh(spec, device))
            }
        }
    }
}

/// Where the model runs, as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// The libtorch device; `auto` picks CUDA 0 when libtorch sees a GPU. Asking for a
    /// GPU libtorch cannot see is an error (tch would panic on first use).
    pub fn resolve(self) -> Result<tch::Device, String> {
        match self {
            DeviceSpec::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Cuda(n) => {
                let count = tch::Cuda::device_count();
                if (n as i64) < count {
                    Ok(tch::Device::Cuda(n))
                } else if count == 0 {
                    Err(format!(
                        "device cuda:{n} requested, but libtorch sees no CUDA device (no GPU, or the CPU-only libtorch: \
                         run scripts/setup.sh --cuda)"
                    ))
                } else {
                    Err(format!(
                        "device cuda:{n} requested, but libtorch sees only {count} CUDA device(s)"
                    ))
                }
            }
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device '{s}' (use auto, cpu, cuda or cuda:N)")),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}
