//! `[[stream]]`: one camera/microphone source, described by a pipeline file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pipeline::{ParamValue, PipelineFile, check_launch};
use crate::problems::Problems;

/// One `[[stream]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Unique name: used in MQTT topics and logs (letters, digits, '_' and '-').
    pub name: String,
    /// The pipeline file; a relative path is looked up beside the config file (where it
    /// really is), in its parent, in /etc/avscene, the binary's share/avscene and the
    /// repository avscene was built from — as given and as `pipelines/<name>` (see
    /// [`crate::config::search_dirs`]).
    pub pipeline: PathBuf,
    /// Values for the pipeline file's `${name}` placeholders (device paths, URIs, …);
    /// `loop` and `realtime` (true or false) override the pipeline file's settings for
    /// this stream.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// A disabled stream is validated but not started.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

const fn default_enabled() -> bool {
    true
}

/// A stream ready to build: its name and complete GStreamer launch description.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub name: String,
    pub pipeline_file: PathBuf,
    pub description: String,
    pub live: bool,
    /// Start again from the beginning at end of stream (files).
    pub looping: bool,
    /// Deliver a file at the clock's pace, as a camera would.
    pub realtime: bool,
    pub launch: String,
    /// A file a command decodes (training, `classify`): its end is no news to log.
    pub quiet: bool,
}

/// `[capture]` settings, shared by every stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// A stream whose audio or video delivers nothing for this long has stalled and is
    /// restarted (seconds).
    pub stall_timeout_s: f64,
    /// First wait before restarting a failed stream; doubles up to `restart_max_s`.
    pub restart_initial_s: f64,
    pub restart_max_s: f64,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            stall_timeout_s: 10.0,
            restart_initial_s: 1.0,
            restart_max_s: 60.0,
        }
    }
}

impl CaptureConfig {
    pub fn validate(&self, problems: &mut Problems) {
        problems.number(
            "capture.stall_timeout_s",
            self.stall_timeout_s,
            1.0..=3600.0,
            " s",
        );
        let initial = problems.number(
            "capture.restart_initial_s",
            self.restart_initial_s,
            0.01..=3600.0,
            " s",
        );
        if problems.number(
            "capture.restart_max_s",
            self.restart_max_s,
            0.01..=86_400.0,
            " s",
        ) && initial
            && self.restart_max_s < self.restart_initial_s
        {
            problems.push(
                "capture.restart_max_s",
                format!(
                    "must be at least restart_initial_s ({}), not {}",
                    self.restart_initial_s, self.restart_max_s
                ),
            );
        }
    }
}

impl StreamConfig {
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(valid) {
            problems.push(
                format!("{key}.name"),
                format!("'{}' is not a valid stream name (1-64 letters, digits, '_' or '-'; it becomes an MQTT topic level)", self.name),
            );
        }
    }

    /// The stream's params split into the placeholders' values (as text) and the
    /// `loop` and `realtime` switches, which override the pipeline file's (realtime
    /// applies to files only: a live source has its own clock).
    fn switches(
        &self,
        file: &PipelineFile,
        key: &str,
        problems: &mut Problems,
    ) -> (BTreeMap<String, String>, bool, bool) {
        let mut params = self.params.clone();
        let mut switch = |name: &str, default: bool| match params.remove(name) {
            None => default,
            Some(ParamValue::Bool(on)) => on,
            Some(ParamValue::Text(t)) if t == "true" || t == "false" => t == "true",
            Some(other) => {
                problems.push(
                    format!("{key}.{name}"),
                    format!("must be true or false, not {}", other.to_text()),
                );
                default
            }
        };
        let looping = switch("loop", file.looping);
        let realtime = switch("realtime", file.realtime) && !file.live;
        let text = params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_text()))
            .collect();
        (text, looping, realtime)
    }

    /// Find, read and check the pipeline file; `None` (with problems recorded) when any
    /// of that fails. A relative `pipeline` is looked for in each of `search` in turn
    /// (as given, and as `pipelines/<file name>`); what may be wrong but need not be (a
    /// file or a camera not there yet) goes to `warnings`.
    pub fn resolve(
        &self,
        key: &str,
        search: &[PathBuf],
        problems: &mut Problems,
        warnings: &mut Problems,
    ) -> Option<StreamSpec> {
        let params_key = format!("{key}.params");
        let key = format!("{key}.pipeline");
        let candidates: Vec<PathBuf> = if self.pipeline.is_absolute() {
            vec![self.pipeline.clone()]
        } else {
            let mut c: Vec<PathBuf> = Vec::new();
            for dir in search {
                let mut add = |p: PathBuf| {
                    if !c.contains(&p) {
                        c.push(p);
                    }
                };
                add(dir.join(&self.pipeline));
                if let Some(name) = self.pipeline.file_name() {
                    add(dir.join("pipelines").join(name));
                }
            }
            c
        };
        let Some(path) = candidates.iter().find(|p| p.is_file()).cloned() else {
            let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            problems.push(
                key,
                format!(
                    "pipeline file '{}' not found (tried {})",
                    self.pipeline.display(),
                    tried.join(", ")
                ),
            );
            return None;
        };
        let file = match PipelineFile::load(&path) {
            Ok(file) => file,
            Err(reason) => {
                problems.push(key, reason);
                return None;
            }
        };
        let (mut params, looping, realtime) = self.switches(&file, &params_key, problems);
        let base = search
            .first()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("."));
        check_params(&file, &mut params, &params_key, base, warnings);
        let launch = match file.launch_description(&params, realtime) {
            Ok(launch) => launch,
            Err(reasons) => {
                for reason in reasons {
                    problems.push(&key, format!("{}: {reason}", path.display()));
                }
                return None;
            }
        };
        if let Err(reason) = check_launch(&launch) {
            problems.push(
                key,
                format!(
                    "{}: GStreamer rejects the pipeline: {reason}",
                    path.display()
                ),
            );
            return None;
        }
        Some(StreamSpec {
            name: self.name.clone(),
            pipeline_file: path,
            description: file.description,
            live: file.live,
            looping,
            realtime,
            launch,
            quiet: false,
        })
    }
}

/// Look at the values that name files and devices: a `uri` given as a bare path is made a
/// `file://` URI (relative to the configuration's folder), and a file or a `/dev/` node
/// that is not there is a warning — cameras come and go, and a file may be copied later.
fn check_params(
    file: &PipelineFile,
    params: &mut BTreeMap<String, String>,
    key: &str,
    base: &Path,
    warnings: &mut Problems,
) {
    for (name, value) in params.iter_mut() {
        let is_uri = name == "uri" || name.ends_with("_uri");
        if is_uri && !value.is_empty() && !value.contains("://") {
            let path = base.join(&*value);
            let absolute = std::fs::canonicalize(&path).unwrap_or(path);
            if let Ok(uri) = gstreamer::glib::filename_to_uri(&absolute, None) {
                warnings.push(
                    format!("{key}.{name}"),
                    format!("'{value}' is a path, not a URI: taken as {uri}"),
                );
                *value = uri.to_string();
            }
        }
    }
    // The pipeline file's defaults count too: they are what the stream gets.
    let mut values: BTreeMap<&str, String> = file
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_text()))
        .collect();
    values.extend(params.iter().map(|(k, v)| (k.as_str(), v.clone())));
    for (name, value) in values {
        let missing = if value.starts_with("file://") {
            match gstreamer::glib::filename_from_uri(&value) {
                Ok((path, _)) if path.exists() => None,
                _ => Some("no such file (yet?)"),
            }
        } else if value.starts_with("/dev/") {
            (!Path::new(&value).exists())
                .then_some("no such device now (unplugged? `avscene devices` lists what there is)")
        } else {
            None
        };
        if let Some(why) = missing {
            warnings.push(format!("{key}.{name}"), format!("{value}: {why}"));
        }
    }
}
