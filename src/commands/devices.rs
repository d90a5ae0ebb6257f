//! `avscene devices`: the cameras and microphones GStreamer sees, with the `params` to
//! paste into a `[[stream]]`; `--test` tries one.

use std::fmt::{self, Write as _};

use super::context::{CommandError, Result, report};
use crate::capture::devices::{Device, DeviceKind, TestReport, list, test};

/// List the cameras and microphones GStreamer's device monitor sees, with the params of
/// a `[[stream]]` for pipelines/camera-mic.toml; --test captures a few seconds from one.
#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// Capture from this device for a few seconds and say what arrived: a camera's
    /// /dev/videoN or a microphone's ALSA name (hw:1,0), as listed.
    #[arg(long, value_name = "DEVICE")]
    pub test: Option<String>,
    /// How long --test captures, in seconds.
    #[arg(long, default_value_t = 3.0, value_name = "S")]
    pub seconds: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DevicesArgs) -> Result {
    if let Some(device) = &args.test {
        if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 600.0) {
            return Err(CommandError::Input(format!(
                "--seconds: must be a number from 0 to 600, not {}",
                args.seconds
            )));
        }
        let known = list().unwrap_or_default();
        let looks_like_one =
            device.starts_with("/dev/") || device.contains(':') || device == "default";
        if !looks_like_one && !known.iter().any(|d| d.device.as_deref() == Some(device)) {
            return Err(CommandError::Input(format!(
                "--test {device}: not a device avscene knows (a camera's /dev/videoN or an ALSA name like hw:1,0); listed now: {}",
                names(&known)
            )));
        }
        let tested = test(device, args.seconds).map_err(|e| {
            if e.contains("no such device") {
                CommandError::Input(e)
            } else {
                CommandError::Failed(e)
            }
        })?;
        report(&tested, args.json)?;
        if tested.buffers == 0 {
            return Err(CommandError::Failed(format!(
                "{device}: nothing arrived in {:.1} s",
                tested.seconds
            )));
        }
        return Ok(());
    }
    let devices = list().map_err(CommandError::Failed)?;
    report(&Listing(devices), args.json)
}

fn names(devices: &[Device]) -> String {
    let names: Vec<&str> = devices.iter().filter_map(|d| d.device.as_deref()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The devices found, as `devices` prints them.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct Listing(Vec<Device>);

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let of = |kind| self.0.iter().filter(move |d: &&Device| d.kind == kind);
        for (kind, title, none) in [
            (
                DeviceKind::Camera,
                "cameras",
                "no camera found (is it plugged in? is this user in the group video?)",
            ),
            (
                DeviceKind::Microphone,
                "microphones",
                "no microphone found (is this user in the group audio? `arecord -l` lists ALSA cards)",
            ),
        ] {
            let found: Vec<&Device> = of(kind).collect();
            if found.is_empty() {
                writeln!(f, "{none}")?;
                continue;
            }
            writeln!(f, "{title}:")?;
            for d in found {
                let device = d.device.as_deref().unwrap_or("?");
                writeln!(f, "  {device}  {} ({})", d.name, d.element)?;
                if !d.modes.is_empty() {
                    let shown: Vec<&str> = d.modes.iter().take(6).map(String::as_str).collect();
                    writeln!(f, "      modes: {}", shown.join(", "))?;
                }
                if let Some(note) = &d.note {
                    writeln!(f, "      note: {note}")?;
                }
            }
        }
        // A stream to paste: the first camera and the first ALSA microphone.
        let camera = of(DeviceKind::Camera).next();
        let microphone = of(DeviceKind::Microphone)
            .find(|d| d.element == "alsasrc")
            .or_else(|| of(DeviceKind::Microphone).next());
        if let Some(camera) = camera {
            let mut params: Vec<String> = camera
                .params
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect();
            if let Some(value) = microphone.and_then(|m| m.params.get("audio_device")) {
                params.push(format!("audio_device = \"{value}\""));
            }
            let mut stream = String::new();
            let _ = writeln!(stream, "[[stream]]");
            let _ = writeln!(stream, "name = \"camera\"");
            let _ = writeln!(stream, "pipeline = \"pipelines/camera-mic.toml\"");
            let _ = writeln!(stream, "params = {{ {} }}", params.join(", "));
            writeln!(
                f,
                "\nfor your configuration (then: avscene devices --test DEVICE):\n{stream}"
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DeviceKind::Camera => "frames",
            DeviceKind::Microphone => "buffers of sound",
        };
        writeln!(
            f,
            "{}: {} {what} in {:.1} s",
            self.device, self.buffers, self.seconds
        )?;
        if let Some(caps) = &self.caps {
            writeln!(f, "  format: {caps}")?;
        }
        if let Some(level) = self.level_dbfs {
            let hint = if level < -80.0 {
                " (silence: is the microphone muted? see alsamixer)"
            } else {
                ""
            };
            writeln!(f, "  level: {level:.1} dBFS{hint}")?;
        }
        Ok(())
    }
}
