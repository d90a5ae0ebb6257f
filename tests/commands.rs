//! The command line as a whole: exit codes follow the kind of error, the same for every
//! subcommand (0 done, 1 failed while running, 2 bad input), and a closed standard output
//! ends a command quietly instead of a panic.

mod common;

use std::process::{Command, Stdio};

use common::{avscene, tempdir, text};

/// Run with standard output closed before anything is written.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = tempdir();
    let out = dir.path().join("set");
    let out = out.to_str().unwrap();
    for args in [
        vec!["model", "info", "--profile", "small", "--device", "cpu"],
        vec![
            "synth-dataset",
            "--out",
            out,
            "--classes",
            "1",
            "--clips-per-class",
            "2",
            "--locations",
            "2",
            "--seconds",
            "1",
        ],
    ] {
        let run = with_closed_stdout(&args);
        let said = text(&run);
        assert_eq!(run.status.code(), Some(0), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
    }
}

#[test]
fn exit_codes_follow_the_kind_of_error() {
    let dir = tempdir();
    let missing = dir.path().join("missing.safetensors");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], i32); 6] = [
        // Bad input: 2, whichever command it is.
        (&["model", "info", "--model", missing], 2),
        (&["classify", "--model", missing, "/nonexistent.mp4"], 2),
        (
            &["evaluate", "--model", missing, "--data", "/nonexistent"],
            2,
        ),
        (&["train", "--data", "/nonexistent", "--out", missing], 2),
        (&["capture", "--config", "/nonexistent.toml"], 2),
        (&["no-such-command"], 2),
    ];
    for (args, code) in cases {
        let run = avscene(args);
        assert_eq!(run.status.code(), Some(code), "{args:?}: {}", text(&run));
        if code != 0 {
            assert!(
                text(&run).contains("avscene") || text(&run).contains("error"),
                "{args:?}"
            );
        }
    }
}

#[test]
fn numbers_on_the_command_line_that_are_no_number_are_refused_by_name() {
    let dir = tempdir();
    let config = common::demo_config(
        dir.path(),
        "[model]\nprofile = \"small\"\ndevice = \"cpu\"\n",
    );
    let config = config.to_str().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let train = |flag: &'static str, value: &'static str| {
        vec![
            "train",
            "--data",
            data,
            "--out",
            out,
            "--profile",
            "small",
            flag,
            value,
        ]
    };
    let record = |minutes: &'static str| {
        vec![
            "record",
            "--config",
            config,
            "--label",
            "x",
            "--minutes",
            minutes,
            "--out",
            out,
        ]
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["capture", "--config", config, "--seconds", "nan"],
            "--seconds",
        ),
        (
            vec!["capture", "--config", config, "--seconds", "inf"],
            "--seconds",
        ),
        (
            vec!["capture", "--config", config, "--seconds=-3"],
            "--seconds",
        ),
        (record("nan"), "--minutes"),
        (record("1e300"), "--minutes"),
        (train("--lr", "nan"), "--lr"),
        (train("--lr", "inf"), "--lr"),
        (train("--weight-decay", "nan"), "--weight-decay"),
        (train("--lr-decay", "inf"), "--lr-decay"),
        (train("--mixup", "nan"), "--mixup"),
    ];
    for (args, flag) in cases {
        let run = avscene(&args);
        let said = text(&run);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
        assert!(said.contains(flag), "{args:?} does not name {flag}: {said}");
    }
}

#[test]
fn media_without_sound_or_picture_is_said_to_lack_that_track_once() {
    let dir = tempdir();
    let sound = dir.path().join("sound.wav");
    let picture = dir.path().join("picture.mp4");
    common::gst(&format!(
        "audiotestsrc num-buffers=600 ! wavenc ! filesink location={}",
        sound.display()
    ));
    common::gst(&format!(
        "videotestsrc num-buffers=120 ! video/x-raw,framerate=10/1 ! x264enc speed-preset=ultrafast ! mp4mux ! filesink location={}",
        picture.display()
    ));
    let model = dir.path().join("small.safetensors");
    avscene::model::Model::fresh(avscene::model::ModelSpec::small(), tch::Device::Cpu)
        .save(&model)
        .unwrap();
    for (file, missing) in [(&sound, "no video track"), (&picture, "no audio track")] {
        let run = avscene(&[
            "classify",
            file.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ]);
        let said = text(&run);
        assert_eq!(run.status.code(), Some(2), "{said}");
        assert_eq!(said.matches(missing).count(), 1, "{said}");
        assert!(!said.contains("stalled"), "{said}");
    }
    // Captured as a stream, a picture without sound is a failed source with the reason,
    // not a stall restarted forever.
    let config = dir.path().join("avscene.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\nenabled = false\n[[stream]]\nname = \"clip\"\npipeline = \"{}/pipelines/file.toml\"\nparams = {{ uri = \"file://{}\" }}\n",
            env!("CARGO_MANIFEST_DIR"),
            picture.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(["capture", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = common::wait_until(30.0, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    assert!(ended, "capture ended: {said}");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("no audio track") && said.contains("0 restarts"),
        "{said}"
    );
}

#[test]
fn devices_lists_what_gstreamer_sees_and_a_device_that_is_not_there_is_named() {
    let run = avscene(&["devices", "--json"]);
    assert!(run.status.success(), "{}", text(&run));
    let listed: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    for d in listed {
        // Whatever this machine has: each one with what a [[stream]] needs.
        assert!(d["kind"] == "camera" || d["kind"] == "microphone", "{d}");
        assert!(d["params"].is_object(), "{d}");
    }
    let run = avscene(&["devices"]);
    assert!(run.status.success(), "{}", text(&run));
    if listed.is_empty() {
        assert!(text(&run).contains("no camera found"), "{}", text(&run));
    }
    let run = avscene(&["devices", "--test", "/dev/video77"]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(
        text(&run).contains("/dev/video77: no such device"),
        "{}",
        text(&run)
    );
    let run = avscene(&["devices", "--test", "hw:77,0"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(text(&run).contains("hw:77,0"), "{}", text(&run));
}
