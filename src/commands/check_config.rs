//! `avscene check-config`: load and validate everything, start nothing, print a summary.

use std::fmt::Write as _;

use super::context::{CommandError, ConfigArg, Result, println};
use crate::config::Settings;
use crate::model::Model;

/// Validate the configuration, every pipeline file it names (parsed by GStreamer), the
/// model file and the device, without starting anything; print a summary. Exit 0 when
/// valid, 2 otherwise.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Also print each stream's complete GStreamer pipeline (gst-launch-1.0 syntax).
    #[arg(long)]
    pub show_pipelines: bool,
}

pub fn run(args: CheckConfigArgs) -> Result {
    let settings = args.config.load()?;
    // What only libtorch can tell: the device exists, the model file is a model.
    let model = &settings.config.model;
    let invalid = |key: &str, reason: String| {
        CommandError::Input(format!(
            "invalid configuration: {}: key `{key}`: {reason}",
            settings.file.display()
        ))
    };
    model
        .device
        .resolve()
        .map_err(|reason| invalid("model.device", reason))?;
    if let Some(file) = &model.path {
        Model::load(file, tch::Device::Cpu)
            .map_err(|error| invalid("model.path", error.to_string()))?;
    }
    println(summary(&settings, args.show_pipelines));
    Ok(())
}

/// A human summary of a valid configuration.
pub fn summary(settings: &Settings, show_launch: bool) -> String {
    let c = &settings.config;
    let mut s = String::new();
    let _ = writeln!(s, "configuration {} is valid", settings.file.display());
    let auth = c
        .mqtt
        .username
        .as_deref()
        .map(|u| format!(", user '{u}'"))
        .unwrap_or_default();
    let tls = if c.mqtt.tls.is_some() {
        "mqtts"
    } else {
        "mqtt"
    };
    let discovery = if c.mqtt.discovery {
        c.mqtt.discovery_prefix.as_str()
    } else {
        "off"
    };
    let _ = writeln!(
        s,
        "  mqtt:      {tls}://{}:{}{auth}, topics {}/<stream>/…, QoS {}, discovery {discovery}",
        c.mqtt.host,
        c.mqtt.port,
        c.mqtt.topic_prefix,
        u8::from(c.mqtt.qos),
    );
    let model = match &c.model.path {
        Some(p) => p.display().to_string(),
        None => format!(
            "none: a freshly initialised '{}' model (labels are meaningless)",
            c.model.profile
        ),
    };
    let _ = writeln!(s, "  model:     {model}, device {}", c.model.device);
    let _ = writeln!(
        s,
        "  inference: batches of up to {} windows, wait ≤ {} ms, queue {}",
        c.inference.max_batch, c.inference.max_wait_ms, c.inference.queue_capacity
    );
    let _ = writeln!(
        s,
        "  window:    {} s every {} s",
        c.window.length_s, c.window.hop_s
    );
    let metrics = if c.metrics.enabled {
        format!("http://{}/metrics", c.metrics.listen)
    } else {
        "off".into()
    };
    let _ = writeln!(s, "  metrics:   {metrics}");
    let disabled = c.streams.iter().filter(|st| !st.enabled).count();
    let _ = writeln!(
        s,
        "  streams:   {} enabled, {disabled} disabled",
        settings.streams.len()
    );
    for stream in &settings.streams {
        let kind = if stream.live { "live" } else { "file" };
        let _ = writeln!(
            s,
            "    - {} ({kind}, {}): {}",
            stream.name,
            stream.pipeline_file.display(),
            stream.description
        );
        if show_launch {
            let _ = writeln!(s, "      gst-launch-1.0 {}", stream.launch);
        }
    }
    for w in &settings.warnings {
        let _ = writeln!(s, "warning: {}: {}", w.key, w.reason);
    }
    s.trim_end().to_string()
}
