//! Running as a service: the daemon (`avscene run`) and sd_notify.

pub mod daemon;
pub mod notify;
mod status;
mod streams;
