//! Pipeline files (`pipelines/*.toml`): the source part of a GStreamer pipeline, written
//! by the user in gst-launch syntax. avscene appends the normalising tails that every
//! stream shares, so the rest of the data flow sees one format whatever the source.

use std::collections::BTreeMap;
use std::path::Path;

use gstreamer::prelude::*;
use serde::Deserialize;

use crate::features::{IMAGE_SIDE, SAMPLE_RATE};

/// Name of the appsink that receives RGB 224×224 frames at 1 fps.
pub const VIDEO_SINK: &str = "video";
/// Name of the appsink that receives F32 mono 48 kHz audio.
pub const AUDIO_SINK: &str = "audio";

/// Appended to the video branch: one frame per second, RGB, the whole frame stretched to
/// 224 × 224 whatever its aspect ratio or pixel aspect ratio. `videorate drop-only`: it
/// only drops frames, never duplicates one for a second that had none — a camera that
/// froze for a few seconds would otherwise come back as repeated frames passed off as
/// new and, as the burst after the freeze is paced out at 1 fps, video running seconds
/// ahead of the audio; the window assembler fills such seconds itself and counts them.
/// `add-borders=false`, else
/// videoscale letterboxes a 16:9 frame into 224 × 126 between black bars. The authors
/// resized every frame with PIL's default (bicubic) filter; Catmull-Rom is the same
/// kernel (a mean difference below one level of 255, measured). `sync`: the appsink
/// waits for the clock — a file played in real time; without it (live sources, files
/// decoded as fast as they go) a live source's latency does not delay the windows.
pub fn video_tail(sync: bool) -> String {
    format!(
        "queue ! videorate drop-only=true ! video/x-raw,framerate=1/1 ! videoconvert \
         ! videoscale add-borders=false method=catrom \
         ! video/x-raw,format=RGB,width={IMAGE_SIDE},height={IMAGE_SIDE},pixel-aspect-ratio=1/1 \
         ! appsink name={VIDEO_SINK} sync={sync}"
    )
}

/// Appended to the audio branch: mono (channels averaged), 32-bit float, 48 kHz; `sync`
/// as for [`video_tail`].
pub fn audio_tail(sync: bool) -> String {
    format!(
        "queue ! audioconvert ! audioresample \
         ! audio/x-raw,format=F32LE,layout=interleaved,channels=1,rate={SAMPLE_RATE} \
         ! appsink name={AUDIO_SINK} sync={sync}"
    )
}

/// A `pipelines/*.toml` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// One line saying what the source is.
    #[serde(default)]
    pub description: String,
    /// A live source (camera, microphone, RTSP, test source) rather than a file decoded as
    /// fast as it goes.
    #[serde(default = "default_live")]
    pub live: bool,
    /// Files: start again at the end instead of ending the stream.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Files: deliver at the speed of the clock (as a camera would) instead of as fast as
    /// the decoder goes.
    #[serde(default)]
    pub realtime: bool,
    /// Defaults for the `${name}` placeholders in `[source]`; a stream's `params` override
    /// them.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    pub source: SourceSpec,
}

/// `[source]`: gst-launch fragments. `video` and `audio` each end where avscene's tail
/// begins; `shared` holds elements both branches come from (a demuxing `uridecodebin
/// name=src`, with `video = "src."` and `audio = "src."`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    #[serde(default)]
    pub shared: String,
    pub video: String,
    pub audio: String,
}

/// A parameter value; numbers and booleans are written into the pipeline as text.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl ParamValue {
    pub fn to_text(&self) -> String {
        match self {
            ParamValue::Text(s) => s.clone(),
            ParamValue::Integer(i) => i.to_string(),
            ParamValue::Float(f) => f.to_string(),
            ParamValue::Bool(b) => b.to_string(),
        }
    }
}

const fn default_live() -> bool {
    true
}

impl PipelineFile {
    /// Read and parse a pipeline file; the error names the file and, for TOML errors, the
    /// line.
    pub fn load(path: &Path) -> Result<PipelineFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))
    }

    /// The complete launch description for a stream: placeholders replaced (stream params
    /// first, then the file's defaults) and the tails appended, synchronised to the clock
    /// when `realtime`. Errors name the key.
    pub fn launch_description(
        &self,
        stream_params: &BTreeMap<String, String>,
        realtime: bool,
    ) -> Result<String, Vec<String>> {
        let mut errors = Vec::new();
        for name in stream_params.keys() {
            if !self.params.contains_key(name) && !self.mentions(name) {
                let known: Vec<&str> = self.params.keys().map(String::as_str).collect();
                errors.push(format!(
                    "unknown param '{name}' (this pipeline's params: {})",
                    list_or_none(&known)
                ));
            }
        }
        let mut values: BTreeMap<String, String> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_text()))
            .collect();
        values.extend(stream_params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut fill = |key: &str, template: &str| substitute(template, &values, key, &mut errors);
        let shared = fill("source.shared", &self.source.shared);
        let video = fill("source.video", &self.source.video);
        let audio = fill("source.audio", &self.source.audio);
        for (key, fragment) in [("source.video", &video), ("source.audio", &audio)] {
            if fragment.trim().is_empty() {
                errors.push(format!("key `{key}`: must not be empty"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(format!(
            "{shared} {video} ! {}  {audio} ! {}",
            video_tail(realtime),
            audio_tail(realtime)
        )
        .trim_start()
        .to_string())
    }

    fn mentions(&self, name: &str) -> bool {
        let placeholder = format!("${{{name}}}");
        [&self.source.shared, &self.source.video, &self.source.audio]
            .iter()
            .any(|s| s.contains(&placeholder))
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Replace `${name}` placeholders; values that gst-launch would split are quoted.
fn substitute(
    template: &str,
    values: &BTreeMap<String, String>,
    key: &str,
    errors: &mut Vec<String>,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            errors.push(format!(
                "key `{key}`: unterminated placeholder '{}'",
                &rest[start..]
            ));
            return out;
        };
        let name = &after[..end];
        match values.get(name) {
            Some(value) => out.push_str(&quote(value)),
            None => errors.push(format!(
                "key `{key}`: placeholder ${{{name}}} has no value (set it in the stream's params or the file's [params])"
            )),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Parse a launch description into a pipeline without starting it: unknown elements,
/// properties and malformed links are reported with GStreamer's own message.
pub fn check_launch(description: &str) -> Result<(), String> {
    gstreamer::init().map_err(|e| format!("GStreamer cannot start: {e}"))?;
    let pipeline =
        gstreamer::parse::launch_full(description, None, gstreamer::ParseFlags::FATAL_ERRORS)
            .map_err(|e| e.to_string())?;
    for sink in [VIDEO_SINK, AUDIO_SINK] {
        let found = pipeline
            .downcast_ref::<gstreamer::Bin>()
            .and_then(|bin| bin.by_name(sink));
        if found.is_none() {
            return Err(format!(
                "the pipeline has no '{sink}' appsink (is the [source] fragment closed with a '!'?)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_and_quotes() {
        let mut errors = Vec::new();
        let v = values(&[("dev", "/dev/video0"), ("uri", "file:///a b.mp4")]);
        let out = substitute("v4l2src device=${dev} ! x uri=${uri}", &v, "k", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            out,
            "v4l2src device=/dev/video0 ! x uri=\"file:///a b.mp4\""
        );
    }

    #[test]
    fn missing_and_unterminated_placeholders_are_named() {
        let mut errors = Vec::new();
        substitute(
            "a=${nope} b=${open",
            &values(&[]),
            "source.video",
            &mut errors,
        );
        assert_eq!(errors.len(), 2);
        assert!(
            errors[0].contains("source.video") && errors[0].contains("${nope}"),
            "{}",
            errors[0]
        );
        assert!(errors[1].contains("unterminated"), "{}", errors[1]);
    }
}
