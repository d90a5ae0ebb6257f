//! Finding cameras and microphones as GStreamer's device monitor sees them, with the
//! `params` a `[[stream]]` of `pipelines/camera-mic.toml` needs, and trying one for a few
//! seconds to see what it delivers.

use std::collections::BTreeMap;
use std::time::Instant;

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;

/// What a device is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Camera,
    Microphone,
}

/// One camera or microphone.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub kind: DeviceKind,
    /// What the device calls itself ("HD Pro Webcam C920").
    pub name: String,
    /// The GStreamer source element that reads it (`v4l2src`, `alsasrc`, `pulsesrc`, …).
    pub element: String,
    /// The element's `device` property: `/dev/video0`, `hw:1,0`, a PulseAudio name.
    pub device: Option<String>,
    /// The raw video modes it offers (`640x480 at 30/1`), best first; empty for sound.
    pub modes: Vec<String>,
    /// The camera-mic.toml params for it.
    pub params: BTreeMap<String, String>,
    /// Something to know before using it.
    pub note: Option<String>,
}

/// Every camera and microphone the device monitor lists now.
pub fn list() -> Result<Vec<Device>, String> {
    gst::init().map_err(|e| format!("GStreamer cannot start: {e}"))?;
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    monitor.add_filter(Some("Audio/Source"), None);
    monitor
        .start()
        .map_err(|e| format!("GStreamer's device monitor cannot start: {e}"))?;
    let devices = monitor.devices();
    monitor.stop();
    let mut out: Vec<Device> = devices.iter().filter_map(describe).collect();
    out.sort_by(|a, b| {
        (a.kind == DeviceKind::Microphone, &a.device)
            .cmp(&(b.kind == DeviceKind::Microphone, &b.device))
    });
    Ok(out)
}

fn describe(device: &gst::Device) -> Option<Device> {
    let kind = if device.has_classes("Video/Source") {
        DeviceKind::Camera
    } else if device.has_classes("Audio/Source") {
        DeviceKind::Microphone
    } else {
        return None;
    };
    let element = device.create_element(None).ok();
    let factory = element
        .as_ref()
        .and_then(|e| e.factory())
        .map(|f| f.name().to_string())
        .unwrap_or_else(|| "?".into());
    let path = element.as_ref().and_then(|e| {
        e.find_property("device")?;
        e.property_value("device")
            .get::<Option<String>>()
            .ok()
            .flatten()
    });
    let mut params = BTreeMap::new();
    let mut note = None;
    let mut modes = Vec::new();
    match kind {
        DeviceKind::Camera => {
            let found = video_modes(device.caps().as_ref());
            if let Some(path) = &path {
                params.insert("video_device".into(), path.clone());
            }
            if let Some((_, _, rate)) = found.first() {
                params.insert("framerate".into(), rate.clone());
            } else {
                note = Some(
                    "offers no raw video (MJPEG or H.264 only): add a decoder after v4l2src in the pipeline file".into(),
                );
            }
            if factory != "v4l2src" {
                note = Some(format!(
                    "read by {factory}; pipelines/camera-mic.toml uses v4l2src"
                ));
            }
            modes = found
                .iter()
                .map(|(w, h, rate)| format!("{w}x{h} at {rate}"))
                .collect();
        }
        DeviceKind::Microphone => {
            if let Some(path) = &path {
                // plughw converts whatever rate and format the card offers.
                let name = match path.strip_prefix("hw:") {
                    Some(rest) if factory == "alsasrc" => format!("plughw:{rest}"),
                    _ => path.clone(),
                };
                params.insert("audio_device".into(), name);
            }
            if factory != "alsasrc" {
                note = Some(format!(
                    "a {factory} source belongs to a desktop session: a system service (user avscene) cannot reach it; use the ALSA device (hw:X,Y) of the same microphone"
                ));
            }
        }
    }
    Some(Device {
        kind,
        name: device.display_name().to_string(),
        element: factory,
        device: path,
        modes,
        params,
        note,
    })
}

/// Raw video modes of `caps` as (width, height, frame rate), the best for the model
/// first: at least 10 fps, then the largest picture up to 1280 × 720 (the model sees
/// 224 × 224; more only costs decoding), then the lowest rate above 10.
fn video_modes(caps: Option<&gst::Caps>) -> Vec<(i32, i32, String)> {
    let mut modes: Vec<(i32, i32, gst::Fraction)> = Vec::new();
    for s in caps.into_iter().flat_map(|c| c.iter()) {
        if s.name() != "video/x-raw" {
            continue;
        }
        let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height")) else {
            continue;
        };
        let rates: Vec<gst::Fraction> = match s.value("framerate") {
            Ok(v) => {
                if let Ok(f) = v.get::<gst::Fraction>() {
                    vec![f]
                } else if let Ok(list) = v.get::<gst::List>() {
                    list.iter()
                        .filter_map(|f| f.get::<gst::Fraction>().ok())
                        .collect()
                } else if let Ok(range) = v.get::<gst::FractionRange>() {
                    vec![range.max()]
                } else {
                    Vec::new()
                }
            }
            Err(_) => Vec::new(),
        };
        for rate in rates {
            if !modes
                .iter()
                .any(|(mw, mh, mr)| (*mw, *mh, *mr) == (w, h, rate))
            {
                modes.push((w, h, rate));
            }
        }
    }
    let fps = |f: &gst::Fraction| f.numer() as f64 / f.denom().max(1) as f64;
    modes.sort_by(|a, b| {
        let key = |(w, h, r): &(i32, i32, gst::Fraction)| {
            let fits = w * h <= 1280 * 720;
            (
                fps(r) >= 10.0,
                fits,
                if fits { w * h } else { -(w * h) },
                -(fps(r) as i64),
            )
        };
        key(b).cmp(&key(a))
    });
    modes
        .into_iter()
        .map(|(w, h, r)| (w, h, format!("{}/{}", r.numer(), r.denom())))
        .collect()
}

/// What a few seconds of one device delivered.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub device: String,
    pub kind: DeviceKind,
    pub seconds: f64,
    pub buffers: u64,
    /// The format that arrived (`video/x-raw, width=640, …`).
    pub caps: Option<String>,
    /// Sound: the level in dBFS (RMS over the whole run).
    pub level_dbfs: Option<f64>,
}

/// Capture from `device` (`/dev/videoN` for a camera, anything else an ALSA device) for
/// `seconds` and count what arrives.
pub fn test(device: &str, seconds: f64) -> Result<TestReport, String> {
    gst::init().map_err(|e| format!("GStreamer cannot start: {e}"))?;
    let camera = device.starts_with("/dev/video");
    if camera && !std::path::Path::new(device).exists() {
        return Err(format!(
            "{device}: no such device (`avscene devices` lists what there is)"
        ));
    }
    let quoted = device.replace('"', "");
    let launch = if camera {
        format!(
            "v4l2src device=\"{quoted}\" ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false max-buffers=8 drop=true"
        )
    } else {
        format!(
            "alsasrc device=\"{quoted}\" ! audioconvert ! audio/x-raw,format=F32LE,channels=1 ! appsink name=sink sync=false max-buffers=64 drop=true"
        )
    };
    let pipeline = gst::parse::launch(&launch)
        .map_err(|e| format!("{device}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| format!("{device}: not a pipeline"))?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gstreamer_app::AppSink>().ok())
        .ok_or("no appsink")?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let stop = |p: &gst::Pipeline| {
        let _ = p.set_state(gst::State::Null);
    };
    pipeline.set_state(gst::State::Playing).map_err(|_| {
        let why = bus_error(&bus).unwrap_or_else(|| "cannot start".into());
        format!("{device}: {why}")
    })?;
    let started = Instant::now();
    let (mut buffers, mut caps, mut sum, mut samples) = (0u64, None, 0f64, 0u64);
    while started.elapsed().as_secs_f64() < seconds {
        if let Some(error) = bus_error(&bus) {
            stop(&pipeline);
            return Err(format!("{device}: {error}"));
        }
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        buffers += 1;
        if caps.is_none() {
            caps = sample.caps().map(|c| c.to_string());
        }
        if !camera && let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
            for chunk in map.chunks_exact(4) {
                let v = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as f64;
                sum += v * v;
                samples += 1;
            }
        }
    }
    stop(&pipeline);
    let level_dbfs =
        (!camera && samples > 0).then(|| 10.0 * (sum / samples as f64).max(1e-12).log10());
    Ok(TestReport {
        device: device.to_string(),
        kind: if camera {
            DeviceKind::Camera
        } else {
            DeviceKind::Microphone
        },
        seconds: started.elapsed().as_secs_f64(),
        buffers,
        caps,
        level_dbfs,
    })
}

/// The first error on the bus, with GStreamer's element and message.
fn bus_error(bus: &gst::Bus) -> Option<String> {
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = message.view() {
            let from = e.src().map(|s| s.name().to_string()).unwrap_or_default();
            return Some(format!("{from}: {}", e.error()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_raw_mode_for_the_model_comes_first() {
        gst::init().unwrap();
        let caps: gst::Caps = "video/x-raw, width=1920, height=1080, framerate=30/1; \
             video/x-raw, width=640, height=480, framerate={ 30/1, 15/1 }; \
             video/x-raw, width=1280, height=720, framerate=10/1; \
             video/x-raw, width=320, height=240, framerate=5/1; \
             image/jpeg, width=1920, height=1080, framerate=30/1"
            .parse()
            .unwrap();
        let modes: Vec<String> = video_modes(Some(&caps))
            .into_iter()
            .map(|(w, h, r)| format!("{w}x{h}@{r}"))
            .collect();
        assert_eq!(
            modes,
            [
                "1280x720@10/1",
                "640x480@15/1",
                "640x480@30/1",
                "1920x1080@30/1",
                "320x240@5/1"
            ]
        );
    }
}
