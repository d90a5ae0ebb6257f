//! Inference: the engine that classifies windows (with the per-frame embedding cache)
//! and the worker thread that owns the model, batches windows from every stream and
//! drops stale ones.

pub mod bench;
mod classify;
mod config;
mod engine;
mod worker;

pub use classify::{Classification, ClassifyError, Probabilities, WindowLabel, classify_file};
pub use config::{InferenceConfig, Precision};
pub use engine::{
    CacheCounts, Engine, SceneResult, image_precision_in_use, precision_in_use,
    set_image_precision, set_precision,
};
pub use worker::{Worker, WorkerStats, spawn_worker};
