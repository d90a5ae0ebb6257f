//! avscene's command line: parse it and hand over to `avscene::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

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
    /// Validate the configuration, every pipeline file it names (parsed by GStreamer),
    /// the model file and the device, without starting anything; print a summary. Exit 0
    /// when valid, 2 otherwise.
    CheckConfig {
        /// Configuration file [default: /etc/avscene/avscene.toml, else ./config/avscene.toml].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also print each stream's complete GStreamer pipeline (gst-launch-1.0 syntax).
        #[arg(long)]
        show_pipelines: bool,
    },
    /// Run the daemon: every configured stream, the model and MQTT, until SIGINT or
    /// SIGTERM; SIGHUP re-reads the configuration.
    Run {
        /// Configuration file [default: /etc/avscene/avscene.toml, else ./config/avscene.toml].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Log every label at info level (otherwise only changes of label).
        #[arg(long)]
        print_labels: bool,
    },
    /// Run one stream and print a line per 10 s window (samples, frames, gaps filled,
    /// audio level); optionally save each window as WAV + PNG files, to see what the
    /// model sees.
    Capture {
        /// Configuration file [default: /etc/avscene/avscene.toml, else ./config/avscene.toml].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The stream to run [default: the first enabled one].
        #[arg(long, value_name = "NAME")]
        stream: Option<String>,
        /// Stop after this many seconds [default: when the stream ends].
        #[arg(long, value_name = "S")]
        seconds: Option<f64>,
        /// Save each window in DIR/<stream>-<seq>/ (audio.wav, frame-0.png …).
        #[arg(long, value_name = "DIR")]
        save_dir: Option<PathBuf>,
    },
    /// Measure inference on synthetic windows (no capture, no broker): windows/s,
    /// latency p50/p99 and real-time factor for the naive path (every window from
    /// scratch) and the cached path, per batch size and thread count; then an overload
    /// run (memory and drops when fed faster than it computes).
    Bench {
        #[command(flatten)]
        model: ModelChoice,
        /// A short run: batch 1 naive, batches 1 and 4 cached, all cores, few iterations.
        #[arg(long)]
        quick: bool,
        /// One JSON object per measured configuration, one per line.
        #[arg(long)]
        json: bool,
        /// Batch sizes, comma-separated [default: naive 1,4; cached 1,4,16].
        #[arg(long, value_delimiter = ',')]
        batches: Option<Vec<usize>>,
        /// libtorch thread counts, comma-separated [default: 1 and all cores].
        #[arg(long, value_delimiter = ',')]
        threads: Option<Vec<usize>>,
        /// OpenL3 every N × 0.1 s (1, 2, 5, 10), as inference.audio_stride.
        #[arg(long, default_value_t = 1)]
        audio_stride: u64,
        /// STFT by FFT, as inference.fast_stft.
        #[arg(long)]
        fast_stft: bool,
        /// Skip the overload run (--json always skips it).
        #[arg(long)]
        no_overload: bool,
    },
    /// Test the MQTT settings: connect, publish to <prefix>/mqtt-test/…, receive it back;
    /// print success or the exact failure (exit 1).
    MqttTest {
        /// Configuration file [default: /etc/avscene/avscene.toml, else ./config/avscene.toml].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Inspect models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Convert public PyTorch weights (as safetensors, see scripts/pth-to-safetensors.py)
    /// into an avscene model file; parts no input covers keep a fresh initialisation.
    ImportWeights {
        /// The model file to write (.safetensors).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// torchvision ResNet50 ImageNet weights (state dict; `fc.*` is dropped).
        #[arg(long = "resnet50", value_name = "FILE")]
        resnet: Option<PathBuf>,
        /// torchopenl3 mel256 / env / 512 weights (state dict).
        #[arg(long, value_name = "FILE")]
        openl3: Option<PathBuf>,
        /// A whole dual-stream checkpoint from the authors' code (Mixed_model state dict).
        #[arg(long, value_name = "FILE")]
        dual_stream: Option<PathBuf>,
        /// Architecture to build: full (the paper's) or small.
        #[arg(long, default_value = "full")]
        profile: String,
        /// Class labels, comma-separated, in output order [default: the ten TAU scenes].
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<String>>,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Write a synthetic audio-visual scene set in the TAU layout (GStreamer test sources
    /// and noise; each class its own picture and sound).
    SynthDataset(avscene::train::SynthOptions),
    /// Train a model on a dataset, TAU or folder-per-label (checkpoints, best model,
    /// training log); --init fine-tunes an existing model.
    Train {
        #[command(flatten)]
        options: avscene::train::TrainOptions,
        /// Where to train: auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: avscene::model::DeviceSpec,
    },
    /// Record labelled 10 s clips from a configured stream into a folder-per-label dataset
    /// (WAV + lossless MKV per clip, recordings.csv), to train on your own scenes.
    Record {
        /// Configuration file [default: /etc/avscene/avscene.toml, else ./config/avscene.toml].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        options: avscene::train::RecordOptions,
    },
    /// Summarise a dataset (TAU or folder-per-label): labels, recordings, 10 s clips,
    /// duration, locations, and the problems found. Exit 2 when it cannot train.
    DatasetInfo {
        /// The dataset directory.
        data: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Score a model on a dataset's evaluation clips: DCASE accuracy and log-loss per
    /// class and overall, confusion matrix, JSON report and PNG plots.
    Evaluate {
        #[command(flatten)]
        options: avscene::train::EvaluateOptions,
        /// Print the JSON report instead of the table.
        #[arg(long)]
        json: bool,
        /// Where to run: auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: avscene::model::DeviceSpec,
    },
    /// Classify one media file (sound and picture in one container): each 10 s window and
    /// the whole file.
    Classify {
        file: PathBuf,
        #[arg(long, short, value_name = "FILE")]
        model: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "auto")]
        device: avscene::model::DeviceSpec,
    },
}

/// Which model a command works on (shared by `bench` and `model info`).
#[derive(Args)]
struct ModelChoice {
    /// Model file (.safetensors) [default: a freshly initialised model of --profile].
    #[arg(long, short, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Profile of the fresh model when no file is given: full or small.
    #[arg(long, default_value = "full")]
    profile: String,
    /// Where to load it: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: avscene::model::DeviceSpec,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Describe a model: classes, input and output shapes, trainable parameters of each
    /// part, provenance. Without --model, a freshly initialised model of --profile.
    Info {
        #[command(flatten)]
        model: ModelChoice,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
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
        Command::Capture {
            config,
            stream,
            seconds,
            save_dir,
        } => avscene::commands::capture(
            config.as_deref(),
            stream.as_deref(),
            seconds,
            save_dir.as_deref(),
        ),
        Command::Bench {
            model,
            quick,
            json,
            batches,
            threads,
            audio_stride,
            fast_stft,
            no_overload,
        } => avscene::commands::bench(avscene::commands::BenchArgs {
            model: model.model.as_deref(),
            profile: &model.profile,
            device: model.device,
            quick,
            json,
            batches,
            threads,
            audio_stride,
            fast_stft,
            overload: !no_overload && !json,
        }),
        Command::SynthDataset(options) => avscene::commands::synth_dataset(options),
        Command::Train { options, device } => avscene::commands::train(options, device),
        Command::Record { config, options } => {
            avscene::commands::record(config.as_deref(), options)
        }
        Command::DatasetInfo { data, json } => avscene::commands::dataset_info(data, json),
        Command::Evaluate {
            options,
            json,
            device,
        } => avscene::commands::evaluate(options, json, device),
        Command::Classify {
            file,
            model,
            json,
            device,
        } => avscene::commands::classify(model, file, json, device),
        Command::Run {
            config,
            print_labels,
        } => avscene::commands::run(config.as_deref(), print_labels),
        Command::MqttTest { config } => avscene::commands::mqtt_test(config.as_deref()),
        Command::Model(ModelCommand::Info { model, json }) => avscene::commands::model_info(
            model.model.as_deref(),
            &model.profile,
            model.device,
            json,
        ),
        Command::ImportWeights {
            out,
            resnet,
            openl3,
            dual_stream,
            profile,
            classes,
            force,
        } => avscene::commands::import_weights(avscene::commands::ImportArgs {
            out: &out,
            resnet: resnet.as_deref(),
            openl3: openl3.as_deref(),
            dual_stream: dual_stream.as_deref(),
            profile: &profile,
            classes,
            force,
        }),
    }
}
