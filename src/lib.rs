//! avscene: live audio-visual scene classification published over MQTT.
//!
//! The modules follow the data flow (see README): `capture` (GStreamer sources) →
//! `window` (sliding 10 s windows) → `infer` (one model thread) → `publish` (MQTT).
//! `config` ties their settings together; `commands` implements the subcommands that
//! `main.rs` dispatches to; `logging` sets up tracing.
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
pub mod service;
pub mod support;
pub mod train;
pub mod window;
