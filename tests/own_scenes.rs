//! Teaching avscene your own scenes, with real media, the real capture path and the real
//! model: `avscene record` writes one minute of a live test stream as 6 lossless clips with
//! their metadata and keeps what it has on Ctrl-C; a folder-per-label set of uneven files
//! in mixed containers is summarised by `dataset-info` and fine-tunes the demo model onto
//! new labels with frozen encoders (bit-identical), and the result labels a live stream in
//! `avscene run`; bad folders get clear messages or counted skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use avscene::capture::{write_video, write_wav};
use avscene::train::features::decode_recording;
use avscene::train::{Clip, Dataset};
use common::{avscene, gst, tempdir, tensors, text};

const DEMO_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/.deps/demo-model/best.safetensors"
);

/// A media file of `seconds` showing `pattern` and playing `wave`, in the container its
/// extension names (mp4, mkv or webm).
fn media(path: &Path, seconds: u32, pattern: &str, wave: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (video, audio, mux) = match path.extension().and_then(|e| e.to_str()) {
        Some("mp4") => ("x264enc speed-preset=ultrafast", "avenc_aac", "mp4mux"),
        Some("mkv") => ("x264enc speed-preset=ultrafast", "vorbisenc", "matroskamux"),
        Some("webm") => ("vp8enc deadline=1", "opusenc", "webmmux"),
        other => panic!("no recipe for {other:?}"),
    };
    let n = seconds * 10;
    gst(&format!(
        "videotestsrc pattern={pattern} num-buffers={n} ! video/x-raw,width=320,height=240,framerate=10/1 \
         ! {video} ! {mux} name=m ! filesink location={} \
         audiotestsrc wave={wave} volume=0.3 samplesperbuffer=4800 num-buffers={n} \
         ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! {audio} ! m.",
        path.display()
    ));
}

/// A sound-only WAV (44.1 kHz stereo, resampled by the capture path) and a picture-only
/// MKV of the same name.
fn wav_and_video(stem: &Path, seconds: u32, pattern: &str, wave: &str) {
    let n = seconds * 10;
    gst(&format!(
        "audiotestsrc wave={wave} volume=0.3 samplesperbuffer=4410 num-buffers={n} \
         ! audio/x-raw,rate=44100,channels=2 ! wavenc ! filesink location={}.wav",
        stem.display()
    ));
    gst(&format!(
        "videotestsrc pattern={pattern} num-buffers={n} ! video/x-raw,width=320,height=240,framerate=10/1 \
         ! x264enc speed-preset=ultrafast ! matroskamux ! filesink location={}.mkv",
        stem.display()
    ));
}

fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(extension))
        .collect();
    files.sort();
    files
}

/// `recordings.csv` rows as column → value.
fn recordings(dir: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("recordings.csv")).unwrap_or_default();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    lines
        .map(|l| {
            header
                .iter()
                .map(|h| h.to_string())
                .zip(l.split('\t').map(str::to_string))
                .collect()
        })
        .collect()
}

#[test]
fn recording_one_minute_yields_six_clips_with_their_metadata() {
    let dir = tempdir();
    let config = common::demo_config(dir.path(), "");
    let out = dir.path().join("scenes");
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let run = avscene(&[
        "record",
        "--config",
        config.to_str().unwrap(),
        "--stream",
        "demo",
        "--label",
        "porch",
        "--minutes",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(said.contains("clip 6/6"), "progress per clip: {said}");
    assert!(said.contains("recorded 6 clip(s)"), "{said}");

    let wavs = files_with(&out.join("porch"), ".wav");
    let mkvs = files_with(&out.join("porch"), ".mkv");
    assert_eq!((wavs.len(), mkvs.len()), (6, 6), "{wavs:?} {mkvs:?}");
    assert!(files_with(&out.join("porch"), ".partial").is_empty());
    // 10 s of 48 kHz mono float: a 44-byte header and 480 000 samples.
    for wav in &wavs {
        let bytes = std::fs::read(wav).unwrap();
        assert_eq!(bytes.len(), 44 + 480_000 * 4, "{}", wav.display());
        assert_eq!(
            u32::from_le_bytes(bytes[24..28].try_into().unwrap()),
            48_000
        );
    }

    let rows = recordings(&out);
    assert_eq!(rows.len(), 6);
    let day = &started[..10];
    let mut previous: Option<std::time::SystemTime> = None;
    for (row, wav) in rows.iter().zip(&wavs) {
        assert_eq!(row["scene_label"], "porch");
        assert_eq!(row["stream"], "demo");
        assert_eq!(row["identifier"], format!("demo-{day}"), "{row:?}");
        assert_eq!(out.join(&row["filename_audio"]), *wav);
        assert_eq!(
            out.join(&row["filename_video"]),
            wav.with_extension("mkv"),
            "{row:?}"
        );
        let start = humantime::parse_rfc3339(&row["start_utc"]).unwrap();
        if let Some(p) = previous {
            let gap = start.duration_since(p).unwrap().as_secs_f64();
            assert!((9.0..=11.0).contains(&gap), "clips 10 s apart: {gap}");
        }
        previous = Some(start);
    }

    // The clips read back as a folder-per-label dataset: one label, 6 clips of 10 s, one
    // location; with a single label it cannot train, and says why.
    let info = avscene(&["dataset-info", out.to_str().unwrap(), "--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&info.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&info)));
    assert_eq!(v["layout"], "folder-per-label", "{v}");
    assert_eq!(v["labels"]["porch"]["clips"], 6, "{v}");
    assert_eq!(v["labels"]["porch"]["locations"], 1, "{v}");
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");
    assert!(
        v["cannot_train"]
            .as_str()
            .is_some_and(|r| r.contains("only one label")),
        "{v}"
    );
    assert_eq!(info.status.code(), Some(2));
}

#[test]
fn ctrl_c_keeps_every_clip_recorded_and_bad_record_options_are_refused() {
    let dir = tempdir();
    let config = common::demo_config(dir.path(), "");
    let out = dir.path().join("scenes");
    let args = |label: &str, stream: &str| -> Vec<String> {
        [
            "record",
            "--config",
            config.to_str().unwrap(),
            "--stream",
            stream,
            "--label",
            label,
            "--minutes",
            "5",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(args("shop", "demo"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while recordings(&out).len() < 2 {
        assert!(Instant::now() < until, "no 2 clips within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut said).unwrap();
    assert!(status.success(), "{said}");
    assert!(said.contains("interrupted"), "{said}");
    let rows = recordings(&out);
    assert!((2..=3).contains(&rows.len()), "{rows:?}");
    assert_eq!(files_with(&out.join("shop"), ".wav").len(), rows.len());
    assert_eq!(files_with(&out.join("shop"), ".mkv").len(), rows.len());
    assert!(files_with(&out.join("shop"), ".partial").is_empty());

    // A label that is not a folder name, a stream that is not configured.
    let refused = |args: Vec<String>, expect: &str| {
        let run = avscene(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(run.status.code(), Some(2), "{}", text(&run));
        assert!(text(&run).contains(expect), "{}", text(&run));
    };
    refused(args("../up", "demo"), "--label '../up'");
    refused(args("porch", "garage"), "no enabled stream named 'garage'");

    // A camera that is not there: the capture failure, before any clip.
    std::fs::write(
        dir.path().join("pipelines/missing.toml"),
        "live = true\n[source]\nvideo = \"v4l2src device=/dev/video97\"\n\
         audio = \"audiotestsrc is-live=true\"\n",
    )
    .unwrap();
    let text_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text_config}\n[[stream]]\nname = \"garage\"\npipeline = \"pipelines/missing.toml\"\n"
        ),
    )
    .unwrap();
    let run = avscene(
        &args("garage", "garage")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let said = text(&run);
    assert_eq!(run.status.code(), Some(1), "{said}");
    assert!(
        said.contains("stream 'garage' failed before the first clip") && said.contains("video97"),
        "{said}"
    );
}

#[test]
fn a_recorded_clip_decodes_back_to_the_same_samples_and_pixels() {
    let dir = tempdir();
    let window = common::synthetic_windows("cam", 10, 3).remove(0);
    let (audio, video) = (dir.path().join("c.wav"), dir.path().join("c.mkv"));
    write_wav(&audio, &window.audio).unwrap();
    write_video(&video, &window.frames).unwrap();
    let clip = Clip {
        audio,
        video,
        label: "x".into(),
        identifier: "cam".into(),
        cut: true,
    };
    let decoded = decode_recording(&clip).unwrap();
    assert_eq!(decoded.len(), 1);
    assert_eq!(decoded[0].audio, window.audio, "audio bit-exact");
    for (i, (a, b)) in decoded[0].frames.iter().zip(&window.frames).enumerate() {
        assert!(a[..] == b[..], "frame {i} differs");
    }
}

/// A folder-per-label set: "porch" (the demo's ball over pink noise) and "shop" (colour
/// bars with a sine), in files of uneven length and every supported kind.
fn own_scenes(root: &Path) {
    media(&root.join("porch/front.mp4"), 25, "ball", "pink-noise");
    media(&root.join("porch/evening.webm"), 12, "ball", "pink-noise");
    wav_and_video(&root.join("porch/phone"), 21, "ball", "pink-noise");
    media(&root.join("shop/floor.mkv"), 31, "smpte", "sine");
    media(&root.join("shop/till.mp4"), 11, "smpte", "sine");
    media(&root.join("shop/door.webm"), 14, "smpte", "sine");
}

/// `avscene train` fine-tuning the demo model on `data` with frozen encoders (CPU, lr 1e-3,
/// batches of 4) for `epochs`, then `extra`.
fn fine_tune(data: &Path, out: &Path, epochs: &str, extra: &[&str]) -> std::process::Output {
    let (data, out) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec![
        "train",
        "--data",
        data,
        "--out",
        out,
        "--init",
        DEMO_MODEL,
        "--freeze-encoders",
        "--epochs",
        epochs,
        "--lr",
        "1e-3",
        "--batch",
        "4",
        "--device",
        "cpu",
    ];
    args.extend(extra);
    avscene(&args)
}

#[test]
fn a_folder_per_label_set_fine_tunes_the_demo_model_onto_new_labels_and_serves() {
    assert!(
        Path::new(DEMO_MODEL).is_file(),
        "{DEMO_MODEL} is missing: scripts/setup.sh trains it"
    );
    let dir = tempdir();
    let data = dir.path().join("scenes");
    own_scenes(&data);

    let info = avscene(&["dataset-info", data.to_str().unwrap()]);
    let said = text(&info);
    assert!(info.status.success(), "{said}");
    assert!(
        said.contains("2 label(s), 6 recording(s), 10 clip(s)"),
        "{said}"
    );
    let porch = said
        .lines()
        .find(|l| l.trim_start().starts_with("porch"))
        .unwrap();
    let columns: Vec<&str> = porch.split_whitespace().collect();
    assert_eq!(
        columns[1..3],
        ["3", "5"],
        "porch: 3 recordings, 2+1+2 clips: {said}"
    );

    // Fine-tune with frozen encoders onto {porch, shop} (the demo model knows four other
    // labels): the classifier is rebuilt, everything else starts from the demo model.
    let out = dir.path().join("model");
    let run = fine_tune(&data, &out, "6", &[]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(said.contains("classifier rebuilt"), "{said}");
    let best = out.join("best.safetensors");

    // A rerun reads every embedding from the cache (the image branch's too) and trains
    // exactly as the first run did.
    let rerun_out = dir.path().join("rerun");
    let cache = out.join("feature-cache");
    let rerun = fine_tune(
        &data,
        &rerun_out,
        "1",
        &["--cache", cache.to_str().unwrap()],
    );
    let said = text(&rerun);
    assert!(
        said.contains("6 recordings from the cache, 0 computed"),
        "{said}"
    );
    let first = |dir: &Path| avscene::train::read_log(&dir.join("train-log.jsonl"))[0].clone();
    assert_eq!(first(&out).train_loss, first(&rerun_out).train_loss);
    assert_eq!(first(&out).val_loss, first(&rerun_out).val_loss);

    // OpenL3 and the image branch are bit-identical to the base; the heads trained.
    let encoders = ["openl3.", "video."];
    let (base, tuned) = (
        tensors(Path::new(DEMO_MODEL), &encoders),
        tensors(&best, &encoders),
    );
    assert!(base.len() > 50, "{}", base.len());
    assert!(base == tuned, "encoder weights changed");
    let heads = ["audio_net.", "encoder."];
    assert!(tensors(Path::new(DEMO_MODEL), &heads) != tensors(&best, &heads));
    let classifier = tensors(&best, &["classifier.1.weight"]);
    assert_eq!(classifier[0].1[0], 2, "two labels");

    // Provenance: base model, data, settings.
    let model = avscene::model::Model::load(&best, tch::Device::Cpu).unwrap();
    assert_eq!(model.spec.classes, ["porch", "shop"]);
    let details = &model.provenance.details;
    assert_eq!(details["init"]["model"], DEMO_MODEL, "{details:?}");
    assert!(
        details["init"]["classifier"]
            .as_str()
            .unwrap()
            .starts_with("rebuilt"),
        "{details:?}"
    );
    assert_eq!(details["layout"], "folder-per-label");
    assert_eq!(
        details["train_clips"].as_u64().unwrap() + details["validation_clips"].as_u64().unwrap(),
        10
    );
    assert_eq!(details["settings"]["freeze_image"], true);
    assert_eq!(details["dataset"], data.display().to_string());

    // The new model labels the demo stream (ball over pink noise) "porch" in `avscene run`.
    let v = common::first_scene_with(dir.path(), &best);
    assert_eq!(v["label"], "porch", "{v}");
}

#[test]
fn bad_folders_get_clear_messages_or_counted_skips() {
    let dir = tempdir();
    let data = dir.path().join("scenes");
    media(&data.join("porch/front.mp4"), 12, "ball", "pink-noise");
    media(&data.join("porch/back.mkv"), 11, "ball", "pink-noise");
    media(&data.join("shop/floor.mp4"), 11, "smpte", "sine");
    media(&data.join("shop/door.webm"), 11, "smpte", "sine");
    // A clip shorter than 10 s, an unreadable file, a WAV without its video, a note.
    media(&data.join("porch/short.mp4"), 5, "ball", "pink-noise");
    std::fs::write(data.join("porch/broken.mp4"), b"not a video at all").unwrap();
    gst(&format!(
        "audiotestsrc num-buffers=10 ! wavenc ! filesink location={}",
        data.join("shop/lonely.wav").display()
    ));
    std::fs::write(data.join("shop/notes.txt"), "bought a new till").unwrap();
    media(&data.join("stray.mp4"), 10, "ball", "sine");
    // A picture without sound.
    gst(&format!(
        "videotestsrc num-buffers=120 ! video/x-raw,width=320,height=240,framerate=10/1 \
         ! x264enc speed-preset=ultrafast ! mp4mux ! filesink location={}",
        data.join("shop/silent.mp4").display()
    ));
    // An empty label folder, and a label with one clip.
    std::fs::create_dir_all(data.join("garden")).unwrap();
    media(&data.join("hall/once.mp4"), 10, "snow", "ticks");

    let info = avscene(&["dataset-info", data.to_str().unwrap()]);
    let said = text(&info);
    assert!(info.status.success(), "{said}");
    for expected in [
        "garden/: label 'garden' has no media files",
        "porch/broken.mp4: cannot read",
        "porch/short.mp4: shorter than 10 s",
        "shop/silent.mp4: no audio track",
        "shop/lonely.wav: no video of the same name",
        "shop/notes.txt: not a media file",
        "stray.mp4: not in a label folder",
        "label 'hall': only 1 clip(s)",
    ] {
        assert!(said.contains(expected), "{expected}: {said}");
    }

    // Training goes on without them and says what it left out — the same problems,
    // found once: a file dataset-info flagged is never decoded.
    let out = dir.path().join("model");
    let run = avscene(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--profile",
        "small",
        "--freeze-image",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(
        !said.contains("skipping"),
        "nothing flagged is decoded: {said}"
    );
    for expected in [
        "porch/broken.mp4: cannot read",
        "porch/short.mp4: shorter than 10 s",
        "shop/silent.mp4: no audio track",
        "label 'hall': only 1 training clip(s)",
        "label 'hall': 1 recording(s), none held out for validation",
    ] {
        assert!(said.contains(expected), "{expected}: {said}");
    }
    assert_eq!(
        avscene::train::read_log(&out.join("train-log.jsonl")).len(),
        1
    );

    // A base model that is not one.
    let bogus = dir.path().join("bogus.safetensors");
    std::fs::write(&bogus, "not a model").unwrap();
    let run = avscene(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("o2").to_str().unwrap(),
        "--init",
        bogus.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(
        text(&run).contains("--init: ") && text(&run).contains("bogus.safetensors"),
        "{}",
        text(&run)
    );

    // Not a dataset; one recording per label (nothing to validate on).
    let nothing = dir.path().join("nothing");
    std::fs::create_dir_all(&nothing).unwrap();
    let run = avscene(&["dataset-info", nothing.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run).contains("not a dataset"), "{}", text(&run));
    let thin = dir.path().join("thin");
    media(&thin.join("a/one.mp4"), 10, "ball", "sine");
    media(&thin.join("b/one.mp4"), 10, "smpte", "sine");
    let err = Dataset::open(&thin, 0).unwrap_err().to_string();
    assert!(err.contains("validation"), "{err}");
    let run = avscene(&["dataset-info", thin.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    // Junk beside them does not make a validation split: dataset-info and train agree
    // that there is nothing to validate on, and say so the same way.
    std::fs::write(thin.join("a/junk.mp4"), b"not a video").unwrap();
    std::fs::write(thin.join("b/junk.mp4"), b"not a video").unwrap();
    let info = avscene(&["dataset-info", thin.to_str().unwrap()]);
    assert_eq!(info.status.code(), Some(2), "{}", text(&info));
    assert!(
        text(&info).contains("a/junk.mp4: cannot read"),
        "{}",
        text(&info)
    );
    let run = avscene(&[
        "train",
        "--data",
        thin.to_str().unwrap(),
        "--out",
        dir.path().join("o3").to_str().unwrap(),
        "--profile",
        "small",
        "--device",
        "cpu",
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    let reason = "every label has a single recording";
    assert!(text(&info).contains(reason), "{}", text(&info));
    assert!(text(&run).contains(reason), "{}", text(&run));
}

#[test]
fn relabelling_keeps_every_weight_and_the_rows_of_known_labels() {
    let mut spec = avscene::model::ModelSpec::profile("small").unwrap();
    spec.classes = ["bus", "park", "tram"].map(String::from).to_vec();
    let base = avscene::model::Model::fresh(spec, tch::Device::Cpu);
    let (tuned, kept) = base.relabel(&["park".to_string(), "porch".to_string()]);
    assert_eq!(kept, 1);
    assert_eq!(tuned.spec.classes, ["park", "porch"]);
    let (old, new) = (base.vs.variables(), tuned.vs.variables());
    assert_eq!(old.len(), new.len());
    for (name, var) in &new {
        if name.starts_with("classifier.") {
            // park was row 1 of the base; porch is new.
            assert!(var.get(0).equal(&old[name].get(1)), "{name}");
            assert_eq!(var.size()[0], 2, "{name}");
        } else {
            assert!(var.equal(&old[name]), "{name} changed");
        }
    }
}
