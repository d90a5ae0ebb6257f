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
use crate::record::RecordConfig;
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
    pub record: RecordConfig,
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
    /// What may be wrong but need not be (a media file or a camera not there now).
    pub warnings: Vec<Problem>,
}

impl Settings {
    /// Log the warnings (a file or a camera not there now), for a command that runs.
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            tracing::warn!("{}: {}: {}", self.file.display(), w.key, w.reason);
        }
    }
}

/// Where relative paths in a configuration are looked for, in order: the folder the
/// file really is in (symlinks followed), its parent (so `pipelines/x.toml` works from
/// both `/etc/avscene/` and the repository's `config/`), the installed configuration,
/// the binary's share folder, and the repository avscene was built from.
pub fn search_dirs(file: &Path) -> Vec<PathBuf> {
    let real = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let base = real
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut dirs = vec![base.clone()];
    dirs.extend(base.parent().map(Path::to_path_buf));
    dirs.push(PathBuf::from("/etc/avscene"));
    if let Some(share) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("share/avscene")))
    {
        dirs.push(share);
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut unique = Vec::new();
    for dir in dirs {
        if !unique.contains(&dir) {
            unique.push(dir);
        }
    }
    unique
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
        let (config, mut problems) = parse(file, &text, &env)?;
        let Some(mut config) = config else {
            return Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                problems: problems.into_vec(),
            });
        };
        let search = search_dirs(file);
        let base = search[0].as_path();
        // A relative model path is looked up as pipeline files are; not found, it is
        // reported beside the configuration.
        if let Some(path) = config.model.path.as_mut().filter(|p| p.is_relative()) {
            let found = search.iter().map(|d| d.join(&*path)).find(|p| p.is_file());
            *path = found.unwrap_or_else(|| base.join(&*path));
        }
        // Other files are taken from the configuration file's folder.
        for path in [
            config.record.dataset.as_mut(),
            config.metrics.token_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        .filter(|p| p.is_relative())
        {
            *path = base.join(&*path);
        }
        config.validate(&mut problems);
        let mut streams = Vec::new();
        let mut warnings = Problems::default();
        for (index, stream) in config.streams.iter().enumerate() {
            let key = format!("stream[{index}]");
            if let Some(spec) = stream.resolve(&key, &search, &mut problems, &mut warnings) {
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
            warnings: warnings.into_vec(),
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

/// Every key problem of a file in one run: deserialise, and on an unknown key or a value
/// of the wrong type note it, take the key out and try again, so three typos are three
/// problems of one `check-config`. The configuration comes back when what is left
/// deserialises (its values are then validated too); `None` when a required key itself
/// is missing or wrong.
fn parse(
    file: &Path,
    text: &str,
    env: &HashMap<String, String>,
) -> Result<(Option<Config>, Problems), ConfigError> {
    let env_source = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .try_parsing(true)
        .source(Some(env.clone()));
    let syntax = |e| ConfigError::Syntax {
        file: file.to_path_buf(),
        message: syntax_message(e),
    };
    let mut tree: serde_json::Value = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(env_source)
        .build()
        .and_then(|layered| layered.try_deserialize())
        .map_err(syntax)?;
    let mut problems = Problems::default();
    let mut reported: Vec<String> = Vec::new();
    loop {
        let error = match serde_path_to_error::deserialize::<_, Config>(&tree) {
            Ok(config) => return Ok((Some(config), problems)),
            Err(error) => error,
        };
        let key = error.path().to_string();
        // A key taken out may leave its table without a required key: that is the
        // same problem, already reported.
        let within = |r: &String| {
            r == &key || r.starts_with(&format!("{key}.")) || r.starts_with(&format!("{key}["))
        };
        let again = reported.iter().any(within);
        if !again {
            problems.push(key.clone(), error.inner().to_string());
            reported.push(key);
        }
        if again || !remove(&mut tree, error.path()) {
            return Ok((None, problems));
        }
    }
}

/// Take the value at `path` out of `tree`; false when there is nothing to take.
fn remove(tree: &mut serde_json::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = tree;
    for segment in parents {
        let next = match segment {
            Segment::Map { key } => node.get_mut(key.as_str()),
            Segment::Seq { index } => node.get_mut(*index),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (last, node) {
        (Segment::Map { key }, serde_json::Value::Object(map)) => map.remove(key).is_some(),
        (Segment::Seq { index }, serde_json::Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
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
        self.record.validate(problems);
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
        // Only once both are valid on their own: a stride of 0 would divide by zero.
        let hop_tenths = (self.window.hop_s * 10.0).round() as u64;
        let stride = self.inference.audio_stride;
        if [1, 2, 5, 10].contains(&stride) && hop_tenths > 0 && hop_tenths % stride != 0 {
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
