//! `[metrics]`: the daemon's HTTP listener — the status page, its API, the Prometheus
//! metrics and the health endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::problems::Problems;

/// Tokens shorter than this are refused: off loopback the token is the only key.
pub const MIN_TOKEN_LEN: usize = 16;

/// The token in `file` (its first line), or why it cannot be used.
pub fn read_token(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < MIN_TOKEN_LEN || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{}: the token (first line) must be at least {MIN_TOKEN_LEN} printable characters without spaces, e.g. from `head -c 24 /dev/urandom | base64`",
            file.display()
        ));
    }
    Ok(token)
}

/// `[metrics]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the status page, `/metrics` and `/health`.
    pub enabled: bool,
    /// Address to listen on. Off loopback, `token_file` is required.
    pub listen: String,
    /// File whose first line is the token that starting or stopping a recording needs
    /// (at least 16 characters); required when `listen` is not a loopback address.
    pub token_file: Option<PathBuf>,
    /// `/health` reports a stream unhealthy once its last label is older than this.
    pub health_stale_s: f64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
            token_file: None,
            health_stale_s: 30.0,
        }
    }
}

impl MetricsConfig {
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
            Some(addr) if !addr.ip().is_loopback() && self.token_file.is_none() => problems.push(
                "metrics.token_file",
                format!(
                    "is required when metrics.listen ({addr}) is not a loopback address: the page shows the camera and can start recordings"
                ),
            ),
            Some(_) => {}
        }
        if let Some(file) = &self.token_file {
            if let Err(reason) = read_token(file) {
                problems.push("metrics.token_file", reason);
            }
        }
    }
}
