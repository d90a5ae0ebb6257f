//! Training and evaluation on datasets (TAU Urban Audio-Visual Scenes 2021 layout, or one
//! folder per label), decoded through the live capture and window code: the dataset
//! reader, the feature cache, the training loop, DCASE metrics, plots, recording labelled
//! clips from a live stream, and a synthetic dataset generator.

mod batches;
mod checkpoint;
pub mod dataset;
mod evaluate;
pub mod features;
pub mod metrics;
pub mod optim;
mod options;
mod plot;
pub mod record;
pub mod synth;
mod trainer;

pub use batches::Flip;
pub use checkpoint::{EpochLog, read_log};
pub use dataset::{Clip, Dataset, DatasetError, Skip};
pub use evaluate::{EvaluateOptions, Evaluation, EvaluationReport, evaluate};
pub use options::TrainOptions;
pub use record::{RecordError, RecordOptions, RecordSummary, record};
pub use synth::{SYNTH_CLASSES, SynthOptions, synth_dataset, synth_label};
pub use trainer::{TrainError, TrainSummary, train};
