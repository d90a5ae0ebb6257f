//! avscene's command line: parse it and hand over to `avscene::commands`.

use std::process::ExitCode;

use clap::Parser;

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
    command: avscene::commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    avscene::logging::init(cli.log_level.as_deref());
    avscene::commands::run(cli.command)
}
