//! The dual-stream audio-visual scene model (Hou et al., DCASE 2021 Task 1B).

mod config;

pub use config::{DeviceSpec, ModelConfig, PROFILES};
