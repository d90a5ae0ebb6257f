//! The subcommands: one file each, taking its clap arguments whole, returning a
//! [`CommandError`] whose kind decides the exit code (see `context.rs`). `main.rs` parses
//! the command line and hands the [`Command`] to [`run`].

mod bench;
mod capture;
mod check_config;
mod classify;
pub mod context;
mod dataset_info;
mod devices;
mod evaluate;
mod fetch_weights;
mod import_weights;
mod model_info;
mod mqtt_test;
mod record;
mod run;
mod synth_dataset;
mod train;

use std::process::ExitCode;

use clap::Subcommand;

pub use check_config::summary;
pub use context::{CommandError, EXIT_FAILURE, EXIT_INPUT};

#[derive(Debug, Subcommand)]
pub enum Command {
    CheckConfig(check_config::CheckConfigArgs),
    Run(run::RunArgs),
    Capture(capture::CaptureArgs),
    Bench(bench::BenchArgs),
    MqttTest(mqtt_test::MqttTestArgs),
    Devices(devices::DevicesArgs),
    /// Inspect models.
    #[command(subcommand)]
    Model(ModelCommand),
    FetchWeights(fetch_weights::FetchWeightsArgs),
    ImportWeights(import_weights::ImportArgs),
    /// Write a synthetic audio-visual scene set in the TAU layout (GStreamer test sources
    /// and noise; each class its own picture and sound).
    SynthDataset(crate::train::SynthOptions),
    Train(train::TrainArgs),
    Record(record::RecordArgs),
    DatasetInfo(dataset_info::DatasetInfoArgs),
    Evaluate(evaluate::EvaluateArgs),
    Classify(classify::ClassifyArgs),
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    Info(model_info::ModelInfoArgs),
}

/// Run a subcommand; its error is printed and becomes the exit code.
pub fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::CheckConfig(args) => check_config::run(args),
        Command::Run(args) => run::run(args),
        Command::Capture(args) => capture::run(args),
        Command::Bench(args) => bench::run(args),
        Command::MqttTest(args) => mqtt_test::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Model(ModelCommand::Info(args)) => model_info::run(args),
        Command::FetchWeights(args) => fetch_weights::run(args),
        Command::ImportWeights(args) => import_weights::run(args),
        Command::SynthDataset(options) => synth_dataset::run(options),
        Command::Train(args) => train::run(args),
        Command::Record(args) => record::run(args),
        Command::DatasetInfo(args) => dataset_info::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Classify(args) => classify::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("avscene: {error}");
            error.exit_code()
        }
    }
}
