//! Capture through real GStreamer pipelines (no hardware): exact windows from synthetic
//! sources, audio and video aligned in a file made with gst-launch-1.0, missing devices
//! retried with backoff while another stream keeps going, stalls and ends detected.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use avscene::capture::WindowReceiver;
use avscene::capture::{StreamHandle, StreamState, spawn, window_queue};
use avscene::config::Settings;
use avscene::features::{IMAGES, SAMPLE_RATE, WINDOW_SAMPLES};
use avscene::window::Window;
use common::tempdir;

/// A config in `dir` with the given pipeline files and streams.
fn settings(
    dir: &Path,
    pipelines: &[(&str, &str)],
    streams: &[(&str, &str)],
    extra: &str,
) -> Settings {
    for (name, text) in pipelines {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let mut config = format!("{extra}\n");
    for (name, pipeline) in streams {
        config.push_str(&format!(
            "[[stream]]\nname = \"{name}\"\npipeline = \"{pipeline}\"\n"
        ));
    }
    let path = dir.join("avscene.toml");
    std::fs::write(&path, config).unwrap();
    Settings::load_with_env(&path, HashMap::new()).unwrap()
}

fn start(settings: &Settings, capacity: usize) -> (Vec<StreamHandle>, WindowReceiver) {
    let (tx, rx) = window_queue(capacity);
    let handles = settings
        .streams
        .iter()
        .map(|s| {
            spawn(
                s.clone(),
                settings.config.capture.clone(),
                settings.config.window.clone(),
                tx.clone(),
            )
        })
        .collect();
    (handles, rx)
}

fn wait_until(timeout: Duration, done: impl FnMut() -> bool) -> bool {
    common::wait_until(timeout.as_secs_f64(), done)
}

const SYNTHETIC: &str = r#"
live = false
[source]
video = "videotestsrc num-buffers=130 pattern=smpte ! video/x-raw,width=160,height=120,framerate=10/1"
audio = "audiotestsrc num-buffers=130 samplesperbuffer=4800 freq=440 ! audio/x-raw,rate=48000,channels=1"
"#;

#[test]
fn synthetic_sources_give_exact_windows_a_hop_apart_then_end() {
    let dir = tempdir();
    let s = settings(
        dir.path(),
        &[("synthetic.toml", SYNTHETIC)],
        &[("synth", "synthetic.toml")],
        "",
    );
    let (handles, rx) = start(&s, 64);
    assert!(
        wait_until(Duration::from_secs(20), || handles[0].is_finished()),
        "the stream did not end"
    );
    assert_eq!(handles[0].stats.state(), StreamState::Ended);
    let windows: Vec<Window> = rx.try_iter().collect();
    assert!(
        windows.len() >= 3,
        "13 s of media give at least 3 windows, got {}",
        windows.len()
    );
    for (i, w) in windows.iter().enumerate() {
        assert_eq!(w.audio.len(), WINDOW_SAMPLES);
        assert_eq!(w.frames.len(), IMAGES);
        assert_eq!(w.seq, i as u64);
        assert_eq!(
            w.start_sample,
            i as u64 * SAMPLE_RATE,
            "one window per 1 s hop"
        );
        assert_eq!(
            (w.filled_samples, w.filled_frames),
            (0, 0),
            "window {i} needed filling"
        );
        assert!(w.audio_rms() > 0.1, "the sine is there");
        if i > 0 {
            assert!(w.start_wall > windows[i - 1].start_wall && w.end_wall > w.start_wall);
        }
    }
    assert_eq!(
        handles[0].stats.windows.load(Ordering::Relaxed),
        windows.len() as u64
    );
}

/// 12 s made with gst-launch-1.0: seconds 0–3 red + 440 Hz, 4–7 green + 880 Hz,
/// 8–11 blue + 1760 Hz, VP8 + Vorbis in WebM.
fn coloured_tones(dir: &Path) -> PathBuf {
    let path = dir.join("tones.webm");
    let mut args: Vec<String> = vec!["-q".into(), "-e".into()];
    let line = format!(
        "webmmux name=mux ! filesink location={} \
         concat name=vc ! videoconvert ! vp8enc deadline=1 keyframe-max-dist=10 ! queue ! mux. \
         concat name=ac ! audioconvert ! vorbisenc ! queue ! mux.",
        path.display()
    );
    args.extend(line.split_whitespace().map(String::from));
    for (colour, freq) in [
        ("0xffff0000", 440),
        ("0xff00ff00", 880),
        ("0xff0000ff", 1760),
    ] {
        let v = format!(
            "videotestsrc num-buffers=40 pattern=solid-color foreground-color={colour} ! video/x-raw,width=160,height=120,framerate=10/1 ! vc."
        );
        let a = format!(
            "audiotestsrc num-buffers=40 samplesperbuffer=4800 freq={freq} ! audio/x-raw,rate=48000,channels=1 ! ac."
        );
        args.extend(v.split_whitespace().map(String::from));
        args.extend(a.split_whitespace().map(String::from));
    }
    let out = Command::new("gst-launch-1.0").args(&args).output().unwrap();
    assert!(
        out.status.success() && path.exists(),
        "gst-launch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Dominant frequency of a second of audio, from its zero crossings.
fn frequency(samples: &[f32]) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|p| (p[0] < 0.0) != (p[1] < 0.0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / SAMPLE_RATE as f64)
}

#[test]
fn a_file_decodes_into_aligned_audio_and_frames() {
    let dir = tempdir();
    let media = coloured_tones(dir.path());
    // The shipped file pipeline, pointed at the media through the stream's params.
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/file.toml"),
        dir.path().join("file.toml"),
    )
    .unwrap();
    let config = format!(
        "[[stream]]\nname = \"tones\"\npipeline = \"file.toml\"\nparams = {{ uri = \"file://{}\" }}\n",
        media.display()
    );
    std::fs::write(dir.path().join("avscene.toml"), config).unwrap();
    let s = Settings::load_with_env(&dir.path().join("avscene.toml"), HashMap::new()).unwrap();
    let (handles, rx) = start(&s, 64);
    assert!(
        wait_until(Duration::from_secs(30), || handles[0].is_finished()),
        "the file did not end"
    );
    assert_eq!(handles[0].stats.last_error(), None);
    let windows: Vec<Window> = rx.try_iter().collect();
    assert!(
        windows.len() >= 2,
        "12 s give at least 2 windows, got {}",
        windows.len()
    );
    assert!(
        windows
            .iter()
            .all(|w| w.filled_samples == 0 && w.filled_frames == 0),
        "nothing needed filling"
    );
    let w = &windows[0];
    let expected = |second: usize| match second / 4 {
        0 => ([255u8, 0, 0], 440.0),
        1 => ([0, 255, 0], 880.0),
        _ => ([0, 0, 255], 1760.0),
    };
    for second in 0..10 {
        let (rgb, freq) = expected(second);
        let pixel = &w.frames[second][(112 * 224 + 112) * 3..][..3];
        for c in 0..3 {
            assert!(
                pixel[c].abs_diff(rgb[c]) < 40,
                "second {second}: pixel {pixel:?}, expected about {rgb:?}"
            );
        }
        // Skip 50 ms at each edge: codec transitions.
        let audio = &w.audio[second * 48_000 + 2_400..(second + 1) * 48_000 - 2_400];
        let f = frequency(audio);
        assert!(
            (f - freq).abs() < freq * 0.05,
            "second {second}: {f:.0} Hz, expected {freq} Hz"
        );
    }
}

#[test]
fn missing_devices_and_files_are_retried_while_another_stream_keeps_going() {
    let dir = tempdir();
    let looping = SYNTHETIC.replace("live = false", "live = false\nloop = true");
    let s = settings(
        dir.path(),
        &[
            ("good.toml", &looping),
            (
                "camera.toml",
                "[source]\nvideo = \"v4l2src device=/dev/video99\"\naudio = \"audiotestsrc is-live=true\"\n",
            ),
            (
                "mic.toml",
                "[source]\nvideo = \"videotestsrc is-live=true\"\naudio = \"alsasrc device=hw:99\"\n",
            ),
            (
                "file.toml",
                "[source]\nshared = \"uridecodebin uri=file:///nonexistent/clip.webm name=d\"\nvideo = \"d.\"\naudio = \"d.\"\n",
            ),
        ],
        &[
            ("good", "good.toml"),
            ("porch", "camera.toml"),
            ("mic", "mic.toml"),
            ("clip", "file.toml"),
        ],
        "[capture]\nrestart_initial_s = 0.2\nrestart_max_s = 1.0\n",
    );
    let (handles, rx) = start(&s, 256);
    let restarted = |i: usize, n: u64| handles[i].stats.restarts.load(Ordering::Relaxed) >= n;
    assert!(
        wait_until(Duration::from_secs(15), || (1..4).all(|i| restarted(i, 2))),
        "failing streams were not retried"
    );
    let errors: Vec<String> = (1..4)
        .map(|i| handles[i].stats.last_error().unwrap_or_default())
        .collect();
    assert!(
        errors[0].starts_with("v4l2src: ") && errors[0].contains("/dev/video99"),
        "{}",
        errors[0]
    );
    assert!(errors[1].starts_with("alsasrc: "), "{}", errors[1]);
    assert!(
        errors[2].contains("not found") || errors[2].contains("Resource"),
        "{}",
        errors[2]
    );
    // The good stream loops its file and keeps producing windows all the while.
    let good: Vec<Window> = rx.try_iter().filter(|w| &*w.stream == "good").collect();
    assert!(
        good.len() > 4,
        "the healthy stream produced {} windows",
        good.len()
    );
    assert_eq!(handles[0].stats.restarts.load(Ordering::Relaxed), 0);
    let starts: Vec<u64> = good.iter().map(|w| w.start_sample).collect();
    assert!(
        starts.windows(2).all(|p| p[1] == p[0] + SAMPLE_RATE),
        "looping continues the timeline: {starts:?}"
    );
    for h in handles {
        h.stop();
    }
}

#[test]
fn a_source_that_stops_producing_is_a_stall() {
    let dir = tempdir();
    let s = settings(
        dir.path(),
        &[(
            "stalls.toml",
            "[source]\nvideo = \"videotestsrc is-live=true ! video/x-raw,framerate=5/1\"\n\
             audio = \"audiotestsrc is-live=true num-buffers=10 samplesperbuffer=4800\"\n",
        )],
        &[("stalls", "stalls.toml")],
        "[capture]\nstall_timeout_s = 1.5\nrestart_initial_s = 5.0\n",
    );
    let (handles, _rx) = start(&s, 8);
    assert!(wait_until(Duration::from_secs(8), || handles[0]
        .stats
        .restarts
        .load(Ordering::Relaxed)
        >= 1));
    let error = handles[0].stats.last_error().unwrap_or_default();
    assert!(
        error.contains("stalled") && error.contains("no audio"),
        "{error}"
    );
    assert!(matches!(
        handles[0].stats.state(),
        StreamState::Backoff { .. }
    ));
}

#[test]
fn windows_are_dropped_oldest_first_when_nobody_keeps_up() {
    let dir = tempdir();
    let s = settings(
        dir.path(),
        &[("synthetic.toml", SYNTHETIC)],
        &[("synth", "synthetic.toml")],
        "",
    );
    // A queue of one that nobody reads while the file decodes.
    let (handles, rx) = start(&s, 1);
    assert!(wait_until(Duration::from_secs(20), || handles[0].is_finished()));
    let produced = handles[0].stats.windows.load(Ordering::Relaxed);
    let dropped = handles[0].stats.dropped.load(Ordering::Relaxed);
    let kept: Vec<Window> = rx.try_iter().collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        dropped,
        produced - 1,
        "every window but the newest was dropped and counted"
    );
    assert_eq!(kept[0].seq, produced - 1, "the newest survives");
}

#[test]
fn the_shipped_live_test_pipeline_gives_a_window_every_second() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/avscene.toml"));
    let s = Settings::load_with_env(path, HashMap::new()).unwrap();
    let (handles, rx) = start(&s, 16);
    // Live: the first window needs 10 s of capture.
    let mut windows = Vec::new();
    let until = Instant::now() + Duration::from_secs(25);
    while windows.len() < 3 && Instant::now() < until {
        if let Ok(w) = rx.recv_timeout(Duration::from_millis(200)) {
            windows.push(w);
        }
    }
    assert_eq!(
        windows.len(),
        3,
        "state {:?}, error {:?}",
        handles[0].stats.state(),
        handles[0].stats.last_error()
    );
    for (i, w) in windows.iter().enumerate() {
        assert_eq!((w.audio.len(), w.frames.len()), (WINDOW_SAMPLES, IMAGES));
        assert_eq!(
            w.start_sample,
            windows[0].start_sample + i as u64 * SAMPLE_RATE
        );
        assert!(
            w.filled_frames <= 1,
            "window {i}: {} frames filled",
            w.filled_frames
        );
        assert!(w.audio_rms() > 0.01);
    }
    let spacing = windows[2]
        .start_wall
        .duration_since(windows[1].start_wall)
        .unwrap();
    assert_eq!(spacing, Duration::from_secs(1));
}

#[test]
fn digital_silence_is_reported_as_a_fault() {
    let dir = tempdir();
    let silent = SYNTHETIC.replace("freq=440", "wave=silence");
    let s = settings(
        dir.path(),
        &[("silent.toml", &silent)],
        &[("quiet", "silent.toml")],
        "",
    );
    let (handles, rx) = start(&s, 64);
    assert!(wait_until(Duration::from_secs(20), || handles[0].is_finished()));
    assert!(rx.try_iter().count() >= 3);
    assert_eq!(
        handles[0].stats.faults.load(Ordering::Relaxed),
        1,
        "reported once"
    );
}

/// The shipped live test pipeline's text (pattern and wave as params).
fn live_test_pipeline() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/test.toml")).unwrap()
}

#[test]
fn a_live_source_that_ends_is_restarted_and_its_windows_are_numbered_on() {
    let dir = tempdir();
    // A live source that ends after 11.5 s: two windows, then end of stream.
    let s = settings(
        dir.path(),
        &[(
            "ends.toml",
            "[source]\nvideo = \"videotestsrc is-live=true num-buffers=115 ! video/x-raw,width=160,height=120,framerate=10/1\"\n\
             audio = \"audiotestsrc is-live=true num-buffers=115 samplesperbuffer=4800 ! audio/x-raw,rate=48000,channels=1\"\n",
        )],
        &[("ends", "ends.toml")],
        "[capture]\nrestart_initial_s = 0.2\n",
    );
    let (handles, rx) = start(&s, 16);
    let mut seqs = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while seqs.len() < 3 && Instant::now() < until {
        if let Ok(w) = rx.recv_timeout(Duration::from_millis(200)) {
            seqs.push(w.seq);
        }
    }
    let stats = &handles[0].stats;
    assert_eq!(seqs, [0, 1, 2], "error {:?}", stats.last_error());
    assert!(stats.restarts.load(Ordering::Relaxed) >= 1);
    let error = stats.last_error().unwrap_or_default();
    assert!(error.contains("live source ended"), "{error}");
    assert!(
        !handles[0].is_finished(),
        "a live source is not done when it ends"
    );
}

#[test]
fn a_flooding_file_cannot_starve_live_streams() {
    let dir = tempdir();
    let flood = SYNTHETIC.replace("live = false", "live = false\nloop = true");
    let s = settings(
        dir.path(),
        &[("test.toml", &live_test_pipeline()), ("flood.toml", &flood)],
        &[
            ("lobby", "test.toml"),
            ("platform", "test.toml"),
            ("flood", "flood.toml"),
        ],
        "",
    );
    // A small queue and a worker that takes 10 windows a second: the looping file makes
    // far more than that, the two live streams one a second each.
    let (handles, rx) = start(&s, 4);
    let mut taken: HashMap<String, u64> = HashMap::new();
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until
        && ["lobby", "platform"]
            .iter()
            .any(|n| taken.get(*n).copied().unwrap_or(0) < 3)
    {
        if let Ok(w) = rx.recv_timeout(Duration::from_millis(200)) {
            *taken.entry(w.stream.to_string()).or_default() += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let dropped = |i: usize| handles[i].stats.dropped.load(Ordering::Relaxed);
    let produced = |i: usize| handles[i].stats.windows.load(Ordering::Relaxed);
    for (i, name) in ["lobby", "platform"].iter().enumerate() {
        assert!(
            taken.get(*name).copied().unwrap_or(0) >= 3,
            "{name}: {taken:?}"
        );
        assert_eq!(dropped(i), 0, "{name} lost windows to the flood");
    }
    assert!(
        dropped(2) > 0 && produced(2) > 20,
        "the flood: {} made, {} dropped",
        produced(2),
        dropped(2)
    );
    assert!(taken["flood"] > 0, "the flood still gets its share");
}

#[test]
fn realtime_and_loop_are_set_per_stream_and_realtime_plays_at_the_clock() {
    let dir = tempdir();
    std::fs::write(dir.path().join("synthetic.toml"), SYNTHETIC).unwrap();
    let path = dir.path().join("avscene.toml");
    std::fs::write(
        &path,
        "[[stream]]\nname = \"paced\"\npipeline = \"synthetic.toml\"\nparams = { realtime = true }\n\
         [[stream]]\nname = \"looped\"\npipeline = \"synthetic.toml\"\nparams = { loop = true }\n",
    )
    .unwrap();
    let s = Settings::load_with_env(&path, HashMap::new()).unwrap();
    assert!(s.streams[0].realtime && !s.streams[0].looping);
    assert!(s.streams[1].looping && !s.streams[1].realtime);
    let began = Instant::now();
    let (handles, rx) = start(&s, 256);
    let mut first_paced = None;
    let mut looped = 0;
    let until = Instant::now() + Duration::from_secs(60);
    while (first_paced.is_none() || looped <= 8) && Instant::now() < until {
        if let Ok(w) = rx.recv_timeout(Duration::from_millis(200)) {
            match &*w.stream {
                "paced" => {
                    first_paced.get_or_insert(began.elapsed());
                }
                _ => looped += 1,
            }
        }
    }
    // The 13 s file has 4 windows: more than 8 means it started over.
    assert!(looped > 8, "looped: {looped} windows");
    assert!(!handles[1].is_finished(), "a looping file goes on");
    // At the clock's pace the first 10 s window cannot be complete before 10 s of
    // playing (decoded as fast as it goes, it is there in a fraction of that).
    let first = first_paced.expect("the paced stream gave a window");
    assert!(
        first >= Duration::from_secs(9),
        "first paced window after {first:?}"
    );
}
