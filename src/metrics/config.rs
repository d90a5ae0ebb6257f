//! `[metrics]`: the Prometheus metrics and health endpoint.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::problems::Problems;

/// `[metrics]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` and `/health`.
    pub enabled: bool,
    /// Address to listen on; keep it on localhost unless a firewall guards it.
    pub listen: String,
    /// `/health` reports a stream unhealthy once its last label is older than this.
    pub health_stale_s: f64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
            health_stale_s: 30.0,
        }
    }
}

impl MetricsConfig {
    /// The `/metrics` and `/health` endpoint, when enabled; an address in use is an error
    /// naming `metrics.listen`.
    pub fn build(
        &self,
        telemetry: std::sync::Arc<super::Telemetry>,
    ) -> Result<Option<super::MetricsServer>, String> {
        match self.listen_addr() {
            Some(address) if self.enabled => {
                super::MetricsServer::start(address, telemetry).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The parsed listen address, once validated.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    pub fn validate(&self, problems: &mut Problems) {
        problems.number(
            "metrics.health_stale_s",
            self.health_stale_s,
            1.0..=86_400.0,
            " s",
        );
        if !self.enabled {
            return;
        }
        match self.listen_addr() {
            None => problems.push(
                "metrics.listen",
                format!(
                    "'{}' is not an address:port such as 127.0.0.1:9464",
                    self.listen
                ),
            ),
            Some(addr) if addr.port() == 0 => problems.push("metrics.listen", "port must not be 0"),
            Some(_) => {}
        }
    }
}
