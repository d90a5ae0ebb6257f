//! What every subcommand shares: its errors and their exit codes, the arguments several
//! take (`--config`, `--device`, which model), loading the configuration, writing to
//! standard output, and the Ctrl-C flag.
//!
//! Exit codes follow the error's kind, the same for every command:
//! 0 — done; 1 — it failed while running (a source, the broker, a write); 2 — bad input
//! (the command line, the configuration, a file or dataset named on the command line).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::config::{ConfigError, Settings};
use crate::model::{DeviceSpec, Model, ModelFileError, ModelSpec, PROFILES};

/// Exit code of a failure while running.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of bad input (as clap's own usage errors).
pub const EXIT_INPUT: u8 = 2;

/// Why a command stopped short.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The input cannot be used: a configuration, an option, a file or a dataset.
    #[error("{0}")]
    Input(String),
    /// It failed while running.
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CommandError::Input(_) => EXIT_INPUT,
            CommandError::Failed(_) => EXIT_FAILURE,
        })
    }
}

impl From<ConfigError> for CommandError {
    fn from(error: ConfigError) -> Self {
        CommandError::Input(format!("invalid configuration: {error}"))
    }
}

/// A model file named on the command line that cannot be used is bad input.
impl From<ModelFileError> for CommandError {
    fn from(error: ModelFileError) -> Self {
        CommandError::Input(error.to_string())
    }
}

impl From<crate::train::TrainError> for CommandError {
    fn from(error: crate::train::TrainError) -> Self {
        use crate::train::TrainError;
        match error {
            TrainError::Dataset(_) | TrainError::Model(_) | TrainError::Options(_) => {
                CommandError::Input(error.to_string())
            }
            TrainError::Failed(_) => CommandError::Failed(error.to_string()),
        }
    }
}

pub type Result<T = ()> = std::result::Result<T, CommandError>;

/// `--config FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Configuration file [default: /etc/avscene/avscene.toml, else ./config/avscene.toml].
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The configuration, validated, or why not (bad input).
    pub fn load(&self) -> Result<Settings> {
        Ok(Settings::load(self.config.as_deref())?)
    }
}

/// `--device`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DeviceArg {
    /// Where to run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceSpec,
}

impl DeviceArg {
    pub fn resolve(&self) -> Result<tch::Device> {
        self.device
            .resolve()
            .map_err(|e| CommandError::Input(format!("--device: {e}")))
    }
}

/// Which model a command works on: a file, or a fresh model of a profile.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelChoice {
    /// Model file (.safetensors) [default: a freshly initialised model of --profile].
    #[arg(long, short, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Profile of the fresh model when no file is given: full or small.
    #[arg(long, default_value = "full")]
    pub profile: String,
    #[command(flatten)]
    pub device: DeviceArg,
}

impl ModelChoice {
    pub fn open(&self) -> Result<Model> {
        let device = self.device.resolve()?;
        match &self.model {
            Some(path) => Ok(Model::load(path, device)?),
            None => ModelSpec::profile(&self.profile)
                .map(|spec| Model::fresh(spec, device))
                .ok_or_else(|| {
                    CommandError::Input(format!(
                        "--profile: unknown profile '{}' (known: {})",
                        self.profile,
                        PROFILES.join(", ")
                    ))
                }),
        }
    }
}

/// Write to standard output. A closed stdout (`avscene … | head`) ends the command
/// quietly: whoever read it has gone, there is no one left to tell.
pub fn print(text: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_ref().as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        let _ = std::io::stderr().flush();
        // SAFETY: _exit ends the process at once; exit handlers are skipped on purpose
        // (libtorch's teardown can crash while another thread still computes).
        unsafe { libc::_exit(0) }
    }
}

/// [`print`] a line.
pub fn println(text: impl AsRef<str>) {
    print(format!("{}\n", text.as_ref()));
}

/// A report: as JSON (pretty) or as its text.
pub fn report<T: serde::Serialize + std::fmt::Display>(value: &T, json: bool) -> Result {
    if json {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CommandError::Failed(format!("cannot write the report as JSON: {e}")))?;
        println(text);
    } else {
        print(value.to_string());
    }
    Ok(())
}

/// A flag that SIGINT (Ctrl-C) or SIGTERM raises: the work in hand finishes, what is done
/// is kept.
pub fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    stop
}

/// Group digits in threes: 23,520,842.
pub fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}
