//! avscene: live audio-visual scene classification published over MQTT.
//!
//! The modules follow the data flow, each importing only those below it:
//!
//! - `support`, `problems` — leaves every stage may use: progress bars, hashing, the
//!   seeded generator, process figures, metric helpers; configuration problems and the
//!   shared checks.
//! - `features` — the model's inputs, defined once (constants, OpenL3 framing and front
//!   end, image tensors).
//! - `window` — sliding 10 s windows from timestamped audio and frames.
//! - `capture` — GStreamer sources, supervised, into windows; decoding files.
//! - `record` — the clip format of recorded datasets; the daemon's recorder.
//! - `model` — the dual-stream network, model files, weight import.
//! - `infer` — the engine with its embedding cache, the worker thread, bench, classify.
//! - `publish` — MQTT and Home Assistant discovery.
//! - `metrics` — gathers every stage's metrics; the health policy; `/metrics`, `/health`.
//! - `web` — the daemon's HTTP listener: the status page, its JSON API, `/metrics`,
//!   `/health`.
//! - `config` — the configuration file, each section a stage's config.
//! - `train` — datasets, the feature cache, training, evaluation, recording.
//! - `service` — the daemon wiring the stages together, sd_notify.
//! - `commands` — one file per subcommand, which `main.rs` dispatches to; `logging`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod capture;
pub mod commands;
pub mod config;
pub mod features;
pub mod infer;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod problems;
pub mod publish;
pub mod record;
pub mod service;
pub mod support;
pub mod train;
pub mod web;
pub mod window;
