//! `[inference]`: how windows are batched through the model.

use serde::{Deserialize, Serialize};

use crate::config::Problems;

/// `[inference]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Most windows run through the model in one batch (1..=256).
    pub max_batch: usize,
    /// Longest a window waits for a batch to fill, in milliseconds (0..=10000).
    pub max_wait_ms: u64,
    /// Windows waiting for the model, across all streams; when full, the oldest are
    /// dropped and counted.
    pub queue_capacity: usize,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            max_batch: 8,
            max_wait_ms: 50,
            queue_capacity: 32,
        }
    }
}

impl InferenceConfig {
    pub fn validate(&self, problems: &mut Problems) {
        if !(1..=256).contains(&self.max_batch) {
            problems.push(
                "inference.max_batch",
                format!("must be 1..=256, not {}", self.max_batch),
            );
        }
        if self.max_wait_ms > 10_000 {
            problems.push(
                "inference.max_wait_ms",
                format!("must be at most 10000, not {}", self.max_wait_ms),
            );
        }
        if self.queue_capacity == 0 {
            problems.push("inference.queue_capacity", "must be at least 1");
        }
    }
}
