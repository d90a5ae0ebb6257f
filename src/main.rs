//! avscene's command line: parse it and hand over to `avscene::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Live audio-visual scene classification: watches and listens through a camera and a
/// microphone and publishes, every second, what kind of place it is in over MQTT.
#[derive(Parser)]
#[command(name = "avscene", version, propagate_version = true)]
struct Cli {
    /// Log level or filter (error, warn, info, debug, trace, or a RUST_LOG-style filter);
    /// overrides RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and every pipeline file it names, without starting
    /// anything; print a summary. Exit 0 when valid, 2 otherwise.
    CheckConfig {
        /// Configuration file [default: /etc/avscene/avscene.toml, else ./config/avscene.toml].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also print each stream's complete GStreamer pipeline (gst-launch-1.0 syntax).
        #[arg(long)]
        show_pipelines: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    avscene::logging::init(cli.log_level.as_deref());
    match cli.command {
        Command::CheckConfig {
            config,
            show_pipelines,
        } => avscene::commands::check_config(config.as_deref(), show_pipelines),
    }
}
