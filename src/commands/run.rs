//! `avscene run`: the live daemon.

use super::context::{CommandError, ConfigArg, Result};
use crate::service::daemon::{self, DaemonError};

/// Run the daemon: every configured stream, the model and MQTT, until SIGINT or SIGTERM;
/// SIGHUP re-reads the configuration.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Log every label at info level (otherwise only changes of label).
    #[arg(long)]
    pub print_labels: bool,
}

pub fn run(args: RunArgs) -> Result {
    daemon::run(args.config.config.as_deref(), args.print_labels).map_err(|error| match error {
        DaemonError::Config(error) => error.into(),
        // The configured model file or device cannot be used: fix the configuration.
        DaemonError::Model(_) => CommandError::Input(error.to_string()),
        other => CommandError::Failed(other.to_string()),
    })
}
