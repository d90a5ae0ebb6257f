//! Running as a service: the daemon (`avscene run`), its metrics and health endpoint,
//! sd_notify, and the process figures they report.

mod config;
pub mod daemon;
pub mod metrics;
pub mod notify;
pub mod process;

pub use config::MetricsConfig;
