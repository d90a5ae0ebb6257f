//! The inference worker: one thread owns the model and batches windows from all streams.

mod config;

pub use config::InferenceConfig;
