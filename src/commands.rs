//! The subcommands behind `main.rs`'s command line. Each returns the process exit code.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Settings;

/// Exit code for a configuration that cannot be used (sysexits' EX_CONFIG would be 78;
/// 2 is what the issue tracker and systemd units expect).
pub const EXIT_CONFIG: u8 = 2;

/// `avscene check-config`: load and validate everything, start nothing, print a summary.
pub fn check_config(path: Option<&Path>, show_launch: bool) -> ExitCode {
    match Settings::load(path) {
        Ok(settings) => {
            print!("{}", summary(&settings, show_launch));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("avscene: invalid configuration: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// A human summary of a valid configuration.
pub fn summary(settings: &Settings, show_launch: bool) -> String {
    use std::fmt::Write;
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
    let _ = writeln!(
        s,
        "  mqtt:      {tls}://{}:{}{auth}, topics {}/<stream>/…, QoS {}, discovery {}",
        c.mqtt.host,
        c.mqtt.port,
        c.mqtt.topic_prefix,
        u8::from(c.mqtt.qos),
        if c.mqtt.discovery {
            c.mqtt.discovery_prefix.as_str()
        } else {
            "off"
        }
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
    s
}
