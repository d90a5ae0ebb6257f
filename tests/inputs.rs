//! What the model sees: whole frames stretched to 224 × 224 from any aspect ratio (as the
//! authors' PIL resize), files decoded to the same windows on every run, and one input
//! path — a media file classified live and prepared for training gives the same tensors
//! and the same logits.

mod common;

use std::path::Path;

use avscene::capture::decode::decode_file;
use avscene::capture::video_tail;
use avscene::features::{IMAGE_SIDE, IMAGES, WINDOW_SAMPLES};
use common::{gst, tempdir};
use gstreamer as gst_;
use gstreamer::prelude::*;

/// RGB of pixel (x, y) of a 224 × 224 frame.
fn pixel(frame: &[u8], x: usize, y: usize) -> [u8; 3] {
    let i = (y * IMAGE_SIDE + x) * 3;
    [frame[i], frame[i + 1], frame[i + 2]]
}

fn near(rgb: [u8; 3], expected: [u8; 3]) -> bool {
    rgb.iter().zip(expected).all(|(a, b)| a.abs_diff(b) < 48)
}

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

/// A red picture inside a blue frame of 40 px, `width` × `height` in all, 12 s with a tone,
/// in the container the extension names.
fn framed_media(path: &Path, width: usize, height: usize) {
    let (video, audio, mux) = match path.extension().and_then(|e| e.to_str()) {
        Some("mp4") => ("x264enc speed-preset=ultrafast", "avenc_aac", "mp4mux"),
        Some("webm") => ("vp8enc deadline=1", "opusenc", "webmmux"),
        other => panic!("no recipe for {other:?}"),
    };
    gst(&format!(
        "videotestsrc pattern=solid-color foreground-color=0xffff0000 num-buffers=120 \
         ! video/x-raw,width={},height={},framerate=10/1 \
         ! videobox top=-40 bottom=-40 left=-40 right=-40 fill=blue ! videoconvert \
         ! {video} ! {mux} name=m ! filesink location={} \
         audiotestsrc volume=0.3 samplesperbuffer=4800 num-buffers=120 \
         ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! {audio} ! m.",
        width - 80,
        height - 80,
        path.display()
    ));
}

/// Every edge of the frame shows the blue border, the middle the red picture: nothing
/// cropped, no black bars.
fn assert_whole_frame(frame: &[u8], what: &str) {
    let last = IMAGE_SIDE - 1;
    for i in [0, 56, 112, 168, last] {
        for (x, y) in [(i, 0), (i, last), (0, i), (last, i)] {
            let rgb = pixel(frame, x, y);
            assert!(
                near(rgb, BLUE),
                "{what}: edge pixel ({x}, {y}) is {rgb:?}, not blue"
            );
        }
    }
    for (x, y) in [(112, 112), (40, 112), (183, 112), (112, 45), (112, 178)] {
        let rgb = pixel(frame, x, y);
        assert!(
            near(rgb, RED),
            "{what}: pixel ({x}, {y}) is {rgb:?}, not red"
        );
    }
}

#[test]
fn frames_of_any_aspect_ratio_are_stretched_whole_to_224() {
    let dir = tempdir();
    for (name, width, height) in [("wide.mp4", 640, 360), ("four-three.webm", 640, 480)] {
        let path = dir.path().join(name);
        framed_media(&path, width, height);
        let windows = decode_file(&path).unwrap();
        let w = &windows[0];
        assert_eq!((w.audio.len(), w.frames.len()), (WINDOW_SAMPLES, IMAGES));
        for (i, frame) in w.frames.iter().enumerate() {
            assert_whole_frame(frame, &format!("{name} ({width}×{height}) frame {i}"));
        }
    }
}

/// The first frame out of the capture tail for a source fragment.
fn tail_frame(source: &str) -> Vec<u8> {
    gst_::init().unwrap();
    let launch = format!("{source} ! {}", video_tail(false));
    let pipeline = gst_::parse::launch(&launch)
        .unwrap()
        .downcast::<gst_::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("video")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst_::State::Playing).unwrap();
    let sample = sink.pull_sample().unwrap();
    let frame = sample.buffer().unwrap().map_readable().unwrap().to_vec();
    pipeline.set_state(gst_::State::Null).unwrap();
    frame
}

#[test]
fn non_square_pixels_are_stretched_whole_too() {
    // PAL DV: 720 × 576 stored pixels of aspect 16/15; the stored picture fills the frame.
    let frame = tail_frame(
        "videotestsrc pattern=solid-color foreground-color=0xffff0000 num-buffers=3 \
         ! video/x-raw,width=640,height=496,pixel-aspect-ratio=16/15,framerate=1/1 \
         ! videobox top=-40 bottom=-40 left=-40 right=-40 fill=blue",
    );
    assert_eq!(frame.len(), IMAGE_SIDE * IMAGE_SIDE * 3);
    assert_whole_frame(&frame, "720×576, pixel aspect 16/15");
}

#[test]
fn frames_are_resized_as_pil_resizes_them() {
    // tests/parity/make_image_reference.py: PIL's Image.resize((224, 224)) of this frame.
    let reference = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/parity/pil-resize-smpte.png"
    );
    let decoder = png::Decoder::new(std::fs::File::open(reference).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut pil = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut pil).unwrap();
    let ours = tail_frame(
        "videotestsrc num-buffers=3 pattern=smpte ! video/x-raw,width=1280,height=720,framerate=1/1",
    );
    assert_eq!(ours.len(), pil.len());
    let mean: f64 = ours
        .iter()
        .zip(&pil)
        .map(|(a, b)| a.abs_diff(*b) as f64)
        .sum::<f64>()
        / ours.len() as f64;
    // Catmull-Rom is PIL's bicubic kernel; GStreamer's default bilinear differs by ~3.
    assert!(
        mean < 0.5,
        "mean difference from PIL's resize: {mean:.2} levels of 255"
    );
}

#[test]
fn a_file_decodes_to_the_same_windows_every_time() {
    let dir = tempdir();
    let path = dir.path().join("hd.mp4");
    // 1280 × 720 H.264 with B-frames (slow to decode beside its AAC sound), moving.
    gst(&format!(
        "videotestsrc pattern=ball num-buffers=360 ! video/x-raw,width=1280,height=720,framerate=30/1 \
         ! x264enc speed-preset=veryfast bframes=2 key-int-max=60 ! h264parse ! mp4mux name=m \
         ! filesink location={} audiotestsrc wave=pink-noise samplesperbuffer=4410 num-buffers=120 \
         ! audio/x-raw,rate=44100,channels=2 ! audioconvert ! avenc_aac ! m.",
        path.display()
    ));
    let first = decode_file(&path).unwrap();
    assert!(
        first.len() >= 3,
        "12 s give windows at 0, 1 and 2 s at least"
    );
    for w in &first {
        assert_eq!(
            (w.filled_samples, w.filled_frames),
            (0, 0),
            "window {}",
            w.seq
        );
    }
    // The ball moves: the frames differ from second to second.
    assert!(first[0].frames[0] != first[0].frames[5]);
    for run in 1..5 {
        let again = decode_file(&path).unwrap();
        assert_eq!(again.len(), first.len(), "run {run}");
        for (a, b) in again.iter().zip(&first) {
            assert_eq!(a.start_sample, b.start_sample);
            assert!(
                a.audio == b.audio,
                "run {run}: window {} audio differs",
                a.seq
            );
            assert!(a.audio_lead == b.audio_lead);
            for (i, (f, g)) in a.frames.iter().zip(&b.frames).enumerate() {
                assert!(f == g, "run {run}: window {} frame {i} differs", a.seq);
            }
            assert_eq!((a.filled_samples, a.filled_frames), (0, 0));
        }
    }
}

#[test]
fn a_file_classified_live_and_prepared_for_training_gives_the_same_inputs_and_logits() {
    use avscene::features::image;
    use avscene::infer::{Engine, InferenceConfig};
    use avscene::model::{Model, ModelSpec};
    use avscene::train::Clip;
    use avscene::train::features::FeatureCache;

    let dir = tempdir();
    let path = dir.path().join("scene.mp4");
    framed_media(&path, 640, 360);
    tch::manual_seed(1);
    let model = Model::fresh(ModelSpec::small(), tch::Device::Cpu);
    // The live path, as `classify` and the daemon run it: windows a second apart, through
    // the engine's per-stream embedding cache.
    let windows = decode_file(&path).unwrap();
    let mut engine = Engine::new(model, &InferenceConfig::default());
    let (audio_live, pictures_live) = tch::no_grad(|| engine.embeddings(&windows[..1]));
    let model = engine.model();
    let logits_live = tch::no_grad(|| model.net.head_t(&audio_live, &pictures_live, false));
    // The training path: the same file cut into 10 s clips, embedded into the feature
    // cache, read back a clip at a time as a batch is.
    let mut cache = FeatureCache::new(&dir.path().join("cache"), model).unwrap();
    let recording = Clip {
        audio: path.clone(),
        video: path.clone(),
        label: "scene".into(),
        identifier: "here".into(),
        cut: true,
    };
    let entry = cache.get(model, &recording).unwrap();
    let frames = entry.read("frames", 0).unwrap();
    let audio = entry.read("audio", 0).unwrap().unsqueeze(0);
    // The same frames, byte for byte, and the same OpenL3 embeddings.
    let live_frames = image::stack_frames(windows[0].frames.iter().map(|f| &f[..]));
    assert!(frames.equal(&live_frames), "frames differ");
    assert!(audio.equal(&audio_live), "OpenL3 embeddings differ");
    let images = image::images(&frames.unsqueeze(0), tch::Device::Cpu);
    let logits_train = tch::no_grad(|| model.net.forward_t(&audio, &images, false));
    let pictures_train = tch::no_grad(|| model.net.embed_images(&images.squeeze_dim(0), false));
    assert!(
        pictures_train.unsqueeze(0).equal(&pictures_live),
        "image embeddings differ"
    );
    assert!(
        logits_train.equal(&logits_live),
        "logits differ: {logits_train} vs {logits_live}"
    );
}
