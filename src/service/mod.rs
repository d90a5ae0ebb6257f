//! Running as a service: the metrics and health endpoint (and, as they land, sd_notify
//! and signals).

mod config;
pub mod daemon;
pub mod process;

pub use config::MetricsConfig;
