//! The daemon's configuration: `config/avscene.toml` layered as built-in defaults → the
//! file → `AVSCENE__SECTION__KEY` environment overrides, deserialised into the typed
//! settings of each stage, then validated as a whole. Every error names the file (or the
//! environment variable), the key and the reason.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::capture::{CaptureConfig, StreamConfig, StreamSpec};
use crate::infer::InferenceConfig;
use crate::metrics::MetricsConfig;
use crate::model::ModelConfig;
use crate::problems::{Problem, Problems};
use crate::publish::MqttConfig;
use crate::window::WindowConfig;

/// Where `--config` points when it is not given: the installed file, then the repository's.
pub const DEFAULT_CONFIG_PATHS: [&str; 2] = ["/etc/avscene/avscene.toml", "config/avscene.toml"];
/// Prefix of environment overrides: `AVSCENE__MQTT__PORT=1884` sets `mqtt.port`.
pub const ENV_PREFIX: &str = "AVSCENE";
const ENV_SEPARATOR: &str = "__";

/// The whole configuration file. Each section belongs to one stage of the data flow.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub model: ModelConfig,
    pub inference: InferenceConfig,
    pub window: WindowConfig,
    pub capture: CaptureConfig,
    pub metrics: MetricsConfig,
    /// `[[stream]]` tables: one per camera/microphone source.
    #[serde(rename = "stream")]
    pub streams: Vec<StreamConfig>,
}

/// A loaded, validated configuration with every stream's pipeline file resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file it came from.
    pub file: PathBuf,
    pub config: Config,
    /// The enabled streams, in file order, with their complete launch descriptions.
    pub streams: Vec<StreamSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no configuration file found (tried {}); pass one with --config", list_paths(.tried))]
    NotFound { tried: Vec<PathBuf> },
    #[error("{}: cannot read the configuration: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid TOML: {message}", .file.display())]
    Syntax { file: PathBuf, message: String },
    /// A key whose value has the wrong type or is not known; `origin` is the file or the
    /// environment variable that set it.
    #[error("{origin}: key `{key}`: {reason}")]
    Key {
        origin: String,
        key: String,
        reason: String,
    },
    #[error("{}: {}", .file.display(), ProblemList(.problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "key `{}`: {}", one.key, one.reason),
            many => {
                write!(f, "{} problems:", many.len())?;
                for p in many {
                    write!(f, "\n  - key `{}`: {}", p.key, p.reason)?;
                }
                Ok(())
            }
        }
    }
}

impl Settings {
    /// Load the configuration the daemon would use: `path`, or the first of
    /// [`DEFAULT_CONFIG_PATHS`] that exists; overrides from this process's environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let file = match path {
            Some(p) => p.to_path_buf(),
            None => find_default_config()?,
        };
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
            .collect();
        Self::load_with_env(&file, env)
    }

    /// Load `file` with the given environment overrides (tests pass their own map rather
    /// than changing the process environment).
    pub fn load_with_env(
        file: &Path,
        env: HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let mut config = parse(file, &text, env.clone())?;
        let base = file.parent().unwrap_or(Path::new("."));
        // A relative model path is looked up as pipeline files are: beside the config
        // file, then in its parent directory.
        if let Some(path) = config.model.path.as_mut().filter(|p| p.is_relative()) {
            let beside = base.join(&*path);
            let above = base.parent().map(|p| p.join(&*path));
            *path = match above {
                Some(above) if !beside.is_file() && above.is_file() => above,
                _ => beside,
            };
        }
        let mut problems = Problems::default();
        config.validate(&mut problems);
        let mut streams = Vec::new();
        for (index, stream) in config.streams.iter().enumerate() {
            let key = format!("stream[{index}]");
            if let Some(spec) = stream.resolve(&key, base, &mut problems) {
                if stream.enabled {
                    streams.push(spec);
                }
            }
        }
        if !problems.is_empty() {
            let problems = problems
                .into_vec()
                .into_iter()
                .map(|p| name_env_origin(p, &env))
                .collect();
            return Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                problems,
            });
        }
        Ok(Settings {
            file: file.to_path_buf(),
            config,
            streams,
        })
    }
}

fn find_default_config() -> Result<PathBuf, ConfigError> {
    let tried: Vec<PathBuf> = DEFAULT_CONFIG_PATHS.iter().map(PathBuf::from).collect();
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(ConfigError::NotFound { tried })
}

fn env_var_for(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{ENV_SEPARATOR}{}",
        key.replace('.', ENV_SEPARATOR).to_uppercase()
    )
}

/// A problem whose key was set from the environment says so, or the user would look for
/// it in the file in vain.
fn name_env_origin(mut problem: Problem, env: &HashMap<String, String>) -> Problem {
    let var = env_var_for(&problem.key);
    if env.contains_key(&var) {
        problem.reason = format!("{} (set by environment variable {var})", problem.reason);
    }
    problem
}

fn parse(file: &Path, text: &str, env: HashMap<String, String>) -> Result<Config, ConfigError> {
    let env_source = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .try_parsing(true)
        .source(Some(env.clone()));
    let layered = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(env_source)
        .build()
        .map_err(|e| ConfigError::Syntax {
            file: file.to_path_buf(),
            message: syntax_message(e),
        })?;
    serde_path_to_error::deserialize::<_, Config>(layered).map_err(|e| {
        let key = e.path().to_string();
        let var = env_var_for(&key);
        let origin = if env.contains_key(&var) {
            format!("environment variable {var}")
        } else {
            file.display().to_string()
        };
        ConfigError::Key {
            origin,
            key,
            reason: key_reason(e.into_inner()),
        }
    })
}

/// The config crate appends "for key … in …" to its messages; we name those ourselves.
fn key_reason(error: config::ConfigError) -> String {
    match error {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => {
            format!("invalid type: {unexpected}, expected {expected}")
        }
        other => {
            let text = other.to_string();
            match text.find(" for key `") {
                Some(cut) => text[..cut].to_string(),
                None => text,
            }
        }
    }
}

fn syntax_message(error: config::ConfigError) -> String {
    match error {
        config::ConfigError::FileParse { cause, .. } => cause.to_string().trim_end().to_string(),
        other => other.to_string(),
    }
}

impl Config {
    /// Check every section and the relations between them; pipeline files are checked
    /// when streams are resolved.
    pub fn validate(&self, problems: &mut Problems) {
        self.mqtt.validate(problems);
        self.model.validate(problems);
        self.inference.validate(problems);
        self.window.validate(problems);
        self.capture.validate(problems);
        self.metrics.validate(problems);
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, stream) in self.streams.iter().enumerate() {
            let key = format!("stream[{index}]");
            stream.validate(&key, problems);
            if let Some(first) = seen.insert(stream.name.as_str(), index) {
                problems.push(
                    format!("{key}.name"),
                    format!(
                        "duplicate stream name '{}' (also stream[{first}])",
                        stream.name
                    ),
                );
            }
        }
        let hop_tenths = (self.window.hop_s * 10.0).round() as u64;
        if hop_tenths > 0 && hop_tenths % self.inference.audio_stride != 0 {
            problems.push(
                "inference.audio_stride",
                format!(
                    "{} × 0.1 s does not divide the hop ({} s): windows would not share encoded frames",
                    self.inference.audio_stride, self.window.hop_s
                ),
            );
        }
        if self.streams.iter().all(|s| !s.enabled) {
            problems.push(
                "stream",
                "no enabled [[stream]]: there is nothing to capture",
            );
        }
    }
}
