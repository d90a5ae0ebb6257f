//! Synthetic audio-visual scene sets in the TAU Urban Audio-Visual Scenes 2021 layout,
//! made with GStreamer's test sources: each class has its own picture (a videotestsrc
//! pattern) and sound (an audiotestsrc wave), each clip its own colours, motion, pitch,
//! loudness and background noise. Used by the tests and for the demo model.

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::support::SplitMix;

/// (videotestsrc pattern, audiotestsrc wave) per class, in class order. The first is what
/// the shipped test pipeline shows and plays (ball, pink noise), so a model trained on a
/// synthetic set recognises the demo stream.
pub const SYNTH_CLASSES: &[(&str, &str)] = &[
    ("ball", "pink-noise"),
    ("smpte", "sine"),
    ("snow", "ticks"),
    ("checkers-8", "square"),
    ("circular", "saw"),
    ("zone-plate", "triangle"),
    ("pinwheel", "white-noise"),
    ("spokes", "red-noise"),
    ("gradient", "blue-noise"),
    ("colors", "violet-noise"),
];

/// What to generate (`avscene synth-dataset`'s options).
#[derive(Debug, Clone, clap::Args)]
pub struct SynthOptions {
    /// The folder to write (TAU layout: audio/, video/, evaluation_setup/).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Scene classes, each a test picture and a sound of its own (1 to 10).
    #[arg(long, default_value_t = 4)]
    pub classes: usize,
    /// Clips per class, dealt round the locations in turn.
    #[arg(long, default_value_t = 9)]
    pub clips_per_class: usize,
    /// Recording locations per class; the last one is the evaluation fold
    /// (fold1_evaluate.csv), and training holds one of the others out to validate on.
    #[arg(long, default_value_t = 4)]
    pub locations: usize,
    /// Length of each clip in seconds (the model takes 10 s windows).
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Seeds the clips' variations: the same seed writes the same set.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A class's label: its pattern and wave (`ball_pinknoise`); no '-' (TAU file names use
/// it as the separator after the label).
pub fn synth_label(class: usize) -> String {
    let (pattern, wave) = SYNTH_CLASSES[class];
    format!("{}_{}", pattern.replace('-', ""), wave.replace('-', ""))
}

/// Write the set; returns the number of clips.
pub fn synth_dataset(options: &SynthOptions) -> Result<usize, String> {
    if options.classes == 0 || options.classes > SYNTH_CLASSES.len() {
        return Err(format!(
            "--classes must be 1..={}, not {}",
            SYNTH_CLASSES.len(),
            options.classes
        ));
    }
    if options.locations < 2 || options.clips_per_class < options.locations {
        return Err(format!(
            "need at least 2 locations and a clip per location (got {} clips over {} locations)",
            options.clips_per_class, options.locations
        ));
    }
    gst::init().map_err(|e| format!("GStreamer: {e}"))?;
    let out = &options.out;
    for dir in ["audio", "video", "evaluation_setup"] {
        std::fs::create_dir_all(out.join(dir))
            .map_err(|e| format!("{}: cannot create: {e}", out.join(dir).display()))?;
    }
    let mut rng = SplitMix(options.seed);
    let mut meta = String::from("filename_audio\tfilename_video\tscene_label\tidentifier\n");
    let mut train = String::from("filename_audio\tfilename_video\tscene_label\n");
    let mut evaluate = train.clone();
    let mut test = String::from("filename_audio\tfilename_video\n");
    let mut count = 0;
    for class in 0..options.classes {
        let label = synth_label(class);
        for clip in 0..options.clips_per_class {
            let location = clip % options.locations;
            let identifier = format!("synth-{class}{location:02}");
            let stem = format!("{label}-{identifier}-{clip}-a");
            let audio = format!("audio/{stem}.wav");
            let video = format!("video/{stem}.mp4");
            write_clip(out, &audio, &video, class, options.seconds, &mut rng)?;
            meta.push_str(&format!("{audio}\t{video}\t{label}\t{identifier}\n"));
            let row = format!("{audio}\t{video}\t{label}\n");
            if location + 1 == options.locations {
                evaluate.push_str(&row);
                test.push_str(&format!("{audio}\t{video}\n"));
            } else {
                train.push_str(&row);
            }
            count += 1;
        }
    }
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text)
            .map_err(|e| format!("{}: {e}", out.join(name).display()))
    };
    write("meta.csv", &meta)?;
    write("evaluation_setup/fold1_train.csv", &train)?;
    write("evaluation_setup/fold1_evaluate.csv", &evaluate)?;
    write("evaluation_setup/fold1_test.csv", &test)?;
    Ok(count)
}

fn write_clip(
    out: &Path,
    audio: &str,
    video: &str,
    class: usize,
    seconds: u32,
    rng: &mut SplitMix,
) -> Result<(), String> {
    let (pattern, wave) = SYNTH_CLASSES[class];
    let tenths = seconds * 10;
    let colour = 0xff00_0000u32 | (rng.next_u64() as u32 & 0x00ff_ffff);
    let speed = rng.range(-8.0, 8.0) as i32;
    let video_launch = format!(
        "videotestsrc pattern={pattern} foreground-color={colour} horizontal-speed={speed} \
         num-buffers={tenths} ! video/x-raw,width=320,height=240,framerate=10/1 ! \
         x264enc speed-preset=ultrafast ! mp4mux ! filesink location=\"{}\"",
        out.join(video).display()
    );
    let freq = 220.0 * (1.0 + class as f64 * 0.4) * rng.range(0.9, 1.1);
    let volume = rng.range(0.2, 0.6);
    let noise = rng.range(0.01, 0.08);
    let audio_launch = format!(
        "audiomixer name=m ! audio/x-raw,rate=48000,channels=1 ! wavenc ! filesink location=\"{}\" \
         audiotestsrc wave={wave} freq={freq:.1} volume={volume:.3} num-buffers={tenths} samplesperbuffer=4800 ! \
         audio/x-raw,rate=48000,channels=1 ! m. \
         audiotestsrc wave=white-noise volume={noise:.3} num-buffers={tenths} samplesperbuffer=4800 ! \
         audio/x-raw,rate=48000,channels=1 ! m.",
        out.join(audio).display()
    );
    run_to_end(&video_launch).map_err(|e| format!("{video}: {e}"))?;
    run_to_end(&audio_launch).map_err(|e| format!("{audio}: {e}"))
}

/// Run a finite pipeline to its end of stream.
pub fn run_to_end(launch: &str) -> Result<(), String> {
    let pipeline = gst::parse::launch(launch).map_err(|e| e.to_string())?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start: {e}"))?;
    let result = crate::capture::wait_for_end(&pipeline, 60);
    let _ = pipeline.set_state(gst::State::Null);
    result
}
