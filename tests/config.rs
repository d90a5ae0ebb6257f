//! Configuration loading: the shipped file, layering with environment overrides, and
//! bad configurations, each of which must name the file (or variable), the key and the
//! reason — through the library and through `avscene check-config`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use avscene::config::{ConfigError, Settings};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A config directory laid out like the repository: `config/avscene.toml` beside a
/// `pipelines/` folder holding copies of the shipped pipeline files.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        for entry in std::fs::read_dir(Path::new(REPO).join("pipelines")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(
                entry.path(),
                dir.path().join("pipelines").join(entry.file_name()),
            )
            .unwrap();
        }
        Layout { dir }
    }
    fn config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("config/avscene.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
    fn pipeline(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join("pipelines").join(name), text).unwrap();
    }
}

const DEMO_STREAM: &str = "[[stream]]\nname = \"demo\"\npipeline = \"pipelines/test.toml\"\n";

fn load(path: &Path) -> Result<Settings, ConfigError> {
    Settings::load_with_env(path, HashMap::new())
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn shipped_config_is_valid() {
    let settings = load(&Path::new(REPO).join("config/avscene.toml")).unwrap();
    assert_eq!(settings.streams.len(), 1);
    let demo = &settings.streams[0];
    assert_eq!(demo.name, "demo");
    assert!(demo.live);
    assert!(
        demo.launch
            .contains("videotestsrc is-live=true pattern=ball"),
        "{}",
        demo.launch
    );
    assert!(
        demo.launch.contains("appsink name=video") && demo.launch.contains("appsink name=audio")
    );
    assert_eq!(settings.config.mqtt.port, 1883);
    assert_eq!(settings.config.window.hop_s, 1.0);
}

#[test]
fn every_shipped_pipeline_file_is_valid() {
    let layout = Layout::new();
    for name in ["test", "camera-mic", "rtsp", "file"] {
        let path = layout.config(&format!(
            "[[stream]]\nname = \"s\"\npipeline = \"pipelines/{name}.toml\"\n"
        ));
        let settings = load(&path).unwrap_or_else(|e| panic!("pipelines/{name}.toml: {e}"));
        assert_eq!(
            settings.streams[0].pipeline_file,
            layout.dir.path().join(format!("pipelines/{name}.toml"))
        );
    }
}

#[test]
fn sections_left_out_take_their_defaults() {
    let layout = Layout::new();
    let settings = load(&layout.config(DEMO_STREAM)).unwrap();
    let c = &settings.config;
    assert_eq!(
        (
            c.mqtt.host.as_str(),
            c.mqtt.port,
            c.mqtt.topic_prefix.as_str()
        ),
        ("127.0.0.1", 1883, "avscene")
    );
    assert_eq!(c.inference.max_batch, 8);
    assert_eq!(c.metrics.listen, "127.0.0.1:9464");
    assert_eq!(c.model.device, avscene::model::DeviceSpec::Auto);
}

#[test]
fn environment_overrides_the_file() {
    let layout = Layout::new();
    let path = layout.config(&format!(
        "[mqtt]\nhost = \"file-host\"\nport = 1883\n{DEMO_STREAM}"
    ));
    let vars = env(&[
        ("AVSCENE__MQTT__PORT", "1884"),
        ("AVSCENE__MQTT__HOST", "broker.lan"),
        ("AVSCENE__INFERENCE__MAX_BATCH", "4"),
        ("AVSCENE__MODEL__DEVICE", "cuda:1"),
        ("AVSCENE__WINDOW__HOP_S", "0.5"),
    ]);
    let c = Settings::load_with_env(&path, vars).unwrap().config;
    assert_eq!(c.mqtt.port, 1884);
    assert_eq!(c.mqtt.host, "broker.lan");
    assert_eq!(c.inference.max_batch, 4);
    assert_eq!(c.model.device, avscene::model::DeviceSpec::Cuda(1));
    assert_eq!(c.window.hop_s, 0.5);
}

#[test]
fn stream_params_fill_the_pipeline_and_disabled_streams_do_not_start() {
    let layout = Layout::new();
    let path = layout.config(
        "[[stream]]\nname = \"a\"\npipeline = \"pipelines/test.toml\"\nparams = { pattern = \"smpte\", wave = \"sine\" }\n\
         [[stream]]\nname = \"b\"\npipeline = \"pipelines/test.toml\"\nenabled = false\n",
    );
    let settings = load(&path).unwrap();
    assert_eq!(settings.streams.len(), 1);
    assert!(
        settings.streams[0].launch.contains("pattern=smpte"),
        "{}",
        settings.streams[0].launch
    );
    assert!(settings.streams[0].launch.contains("wave=sine"));
    assert_eq!(settings.config.streams.len(), 2);
}

#[test]
fn relative_pipelines_resolve_beside_the_config_too() {
    // The installed layout: /etc/avscene/avscene.toml + /etc/avscene/pipelines/.
    let layout = Layout::new();
    let etc = layout.dir.path().join("etc");
    std::fs::create_dir_all(etc.join("pipelines")).unwrap();
    std::fs::copy(
        Path::new(REPO).join("pipelines/test.toml"),
        etc.join("pipelines/test.toml"),
    )
    .unwrap();
    std::fs::write(etc.join("avscene.toml"), DEMO_STREAM).unwrap();
    let settings = load(&etc.join("avscene.toml")).unwrap();
    assert_eq!(
        settings.streams[0].pipeline_file,
        etc.join("pipelines/test.toml")
    );
}

/// One bad configuration: the text, the pipeline files it needs, and what its error must say.
struct Bad {
    what: &'static str,
    config: String,
    pipeline: Option<(&'static str, &'static str)>,
    env: Vec<(&'static str, &'static str)>,
    expect: Vec<&'static str>,
}

fn bad(what: &'static str, config: &str, expect: &[&'static str]) -> Bad {
    Bad {
        what,
        config: config.to_string(),
        pipeline: None,
        env: vec![],
        expect: expect.to_vec(),
    }
}

fn bad_configs() -> Vec<Bad> {
    let with_demo = |s: &str| format!("{s}\n{DEMO_STREAM}");
    let mut cases = vec![
        bad(
            "unknown section",
            &with_demo("[mqt]\nhost = \"x\""),
            &["mqt", "unknown field"],
        ),
        bad(
            "unknown key",
            &with_demo("[mqtt]\nhots = \"x\""),
            &["mqtt.hots", "unknown field"],
        ),
        bad(
            "wrong type",
            &with_demo("[mqtt]\nport = \"abc\""),
            &["mqtt.port"],
        ),
        bad(
            "unknown precision",
            &with_demo("[inference]\nopenl3_precision = \"int4\""),
            &["inference.openl3_precision", "int4", "float32", "int8"],
        ),
        bad(
            "int8 image trunk",
            &with_demo("[inference]\nimage_precision = \"int8\""),
            &["inference.image_precision", "float32 or bfloat16"],
        ),
        bad(
            "port 0",
            &with_demo("[mqtt]\nport = 0"),
            &["mqtt.port", "not 0"],
        ),
        bad(
            "port out of range",
            &with_demo("[mqtt]\nport = 70000"),
            &["mqtt.port"],
        ),
        bad(
            "qos 3",
            &with_demo("[mqtt]\nqos = 3"),
            &["mqtt.qos", "0, 1 or 2"],
        ),
        bad(
            "wildcard topic prefix",
            &with_demo("[mqtt]\ntopic_prefix = \"home/#\""),
            &["mqtt.topic_prefix", "wildcard"],
        ),
        bad(
            "keep-alive too short",
            &with_demo("[mqtt]\nkeep_alive_s = 1"),
            &["mqtt.keep_alive_s", "at least 5"],
        ),
        bad(
            "password without user",
            &with_demo("[mqtt]\npassword_file = \"/etc/hostname\""),
            &["mqtt.password_file", "username"],
        ),
        bad(
            "unreadable password file",
            &with_demo("[mqtt]\nusername = \"u\"\npassword_file = \"/nonexistent/pw\""),
            &["mqtt.password_file", "/nonexistent/pw"],
        ),
        bad(
            "hop longer than window",
            &with_demo("[window]\nhop_s = 12.0"),
            &["window.hop_s", "longer than the window"],
        ),
        bad(
            "hop off the frame grid",
            &with_demo("[window]\nhop_s = 0.25"),
            &["window.hop_s", "multiple of 0.1"],
        ),
        bad(
            "hop zero",
            &with_demo("[window]\nhop_s = 0.0"),
            &["window.hop_s", "positive"],
        ),
        bad(
            "window not 10 s",
            &with_demo("[window]\nlength_s = 5.0"),
            &["window.length_s", "10"],
        ),
        bad(
            "batch 0",
            &with_demo("[inference]\nmax_batch = 0"),
            &["inference.max_batch", "1..=256"],
        ),
        bad(
            "queue 0",
            &with_demo("[inference]\nqueue_capacity = 0"),
            &["inference.queue_capacity"],
        ),
        bad(
            "unknown device",
            &with_demo("[model]\ndevice = \"tpu\""),
            &["model.device", "tpu"],
        ),
        bad(
            "missing model file",
            &with_demo("[model]\npath = \"/nonexistent/model.safetensors\""),
            &["model.path", "/nonexistent/model.safetensors"],
        ),
        bad(
            "unknown profile",
            &with_demo("[model]\nprofile = \"huge\""),
            &["model.profile", "huge"],
        ),
        bad(
            "bad metrics address",
            &with_demo("[metrics]\nlisten = \"localhost\""),
            &["metrics.listen", "address:port"],
        ),
        bad(
            "TOML syntax error",
            "[mqtt\nhost = 1",
            &["not valid TOML", "line 1"],
        ),
        bad(
            "no streams",
            "[mqtt]\nport = 1883\n",
            &["stream", "nothing to capture"],
        ),
        bad(
            "missing pipeline file",
            "[[stream]]\nname = \"a\"\npipeline = \"pipelines/nope.toml\"\n",
            &["stream[0].pipeline", "nope.toml", "not found"],
        ),
        bad(
            "duplicate stream names",
            &format!("{DEMO_STREAM}{DEMO_STREAM}"),
            &["stream[1].name", "duplicate", "demo"],
        ),
        bad(
            "invalid stream name",
            "[[stream]]\nname = \"front door\"\npipeline = \"pipelines/test.toml\"\n",
            &["stream[0].name", "front door"],
        ),
        bad(
            "unknown stream key",
            "[[stream]]\nname = \"a\"\npipline = \"pipelines/test.toml\"\n",
            &["stream[0]", "pipline"],
        ),
        bad(
            "unknown stream param",
            "[[stream]]\nname = \"a\"\npipeline = \"pipelines/test.toml\"\nparams = { patern = \"x\" }\n",
            &["stream[0].pipeline", "unknown param 'patern'", "pattern"],
        ),
    ];
    // Numbers a user can type that are no value at all (TOML has inf and nan), or out of
    // any sensible range: each setting class, none may reach a division or a Duration.
    let numbers: &[(&str, &str, &str)] = &[
        (
            "stride 0",
            "[inference]\naudio_stride = 0",
            "inference.audio_stride",
        ),
        (
            "stale inf",
            "[inference]\nstale_after_s = inf",
            "inference.stale_after_s",
        ),
        (
            "stale 1e300",
            "[inference]\nstale_after_s = 1e300",
            "inference.stale_after_s",
        ),
        (
            "stale nan",
            "[inference]\nstale_after_s = nan",
            "inference.stale_after_s",
        ),
        (
            "huge queue",
            "[inference]\nqueue_capacity = 1000000000000",
            "inference.queue_capacity",
        ),
        ("hop inf", "[window]\nhop_s = inf", "window.hop_s"),
        ("hop nan", "[window]\nhop_s = nan", "window.hop_s"),
        (
            "stall inf",
            "[capture]\nstall_timeout_s = inf",
            "capture.stall_timeout_s",
        ),
        (
            "restart 1e300",
            "[capture]\nrestart_initial_s = 1e300\nrestart_max_s = 1e301",
            "capture.restart_initial_s",
        ),
        (
            "restart max nan",
            "[capture]\nrestart_max_s = nan",
            "capture.restart_max_s",
        ),
        (
            "health inf",
            "[metrics]\nhealth_stale_s = inf",
            "metrics.health_stale_s",
        ),
        (
            "connect timeout 0",
            "[mqtt]\nconnect_timeout_s = 0",
            "mqtt.connect_timeout_s",
        ),
        (
            "huge outbox",
            "[mqtt]\noutbox_capacity = 1000000000000",
            "mqtt.outbox_capacity",
        ),
        (
            "negative keep-alive",
            "[mqtt]\nkeep_alive_s = -5",
            "mqtt.keep_alive_s",
        ),
    ];
    for &(what, text, key) in numbers {
        cases.push(Bad {
            what,
            config: with_demo(text),
            pipeline: None,
            env: vec![],
            expect: vec![key],
        });
    }
    cases.push(bad(
        "loop param that is not a switch",
        "[[stream]]\nname = \"a\"\npipeline = \"pipelines/file.toml\"\nparams = { uri = \"file:///x.mp4\", loop = \"sometimes\" }\n",
        &["stream[0].params.loop", "true or false"],
    ));
    cases.push(Bad {
        what: "pipeline with an unknown element",
        config: "[[stream]]\nname = \"a\"\npipeline = \"pipelines/broken.toml\"\n".into(),
        pipeline: Some((
            "broken.toml",
            "[source]\nvideo = \"videotestsrcx\"\naudio = \"audiotestsrc\"\n",
        )),
        env: vec![],
        expect: vec!["stream[0].pipeline", "broken.toml", "videotestsrcx"],
    });
    cases.push(Bad {
        what: "pipeline with an unknown key",
        config: "[[stream]]\nname = \"a\"\npipeline = \"pipelines/typo.toml\"\n".into(),
        pipeline: Some((
            "typo.toml",
            "[source]\nvideo = \"videotestsrc\"\naudo = \"audiotestsrc\"\n",
        )),
        env: vec![],
        expect: vec!["stream[0].pipeline", "typo.toml", "audo"],
    });
    cases.push(Bad {
        what: "pipeline without a [source] section",
        config: "[[stream]]\nname = \"a\"\npipeline = \"pipelines/nosource.toml\"\n".into(),
        pipeline: Some(("nosource.toml", "description = \"x\"\n")),
        env: vec![],
        expect: vec!["stream[0].pipeline", "nosource.toml", "source"],
    });
    cases.push(Bad {
        what: "pipeline with a launch syntax error",
        config: "[[stream]]\nname = \"a\"\npipeline = \"pipelines/syntax.toml\"\n".into(),
        pipeline: Some((
            "syntax.toml",
            "[source]\nvideo = \"videotestsrc ! ! videoconvert\"\naudio = \"audiotestsrc\"\n",
        )),
        env: vec![],
        expect: vec!["stream[0].pipeline", "syntax.toml", "GStreamer rejects"],
    });
    cases.push(Bad {
        what: "pipeline with bad caps",
        config: "[[stream]]\nname = \"a\"\npipeline = \"pipelines/caps.toml\"\n".into(),
        pipeline: Some(("caps.toml", "[source]\nvideo = \"videotestsrc ! video/x-raw,width=wide\"\naudio = \"audiotestsrc\"\n")),
        env: vec![],
        expect: vec!["stream[0].pipeline", "caps.toml", "GStreamer rejects"],
    });
    cases.push(Bad {
        what: "placeholder without a value",
        config: "[[stream]]\nname = \"a\"\npipeline = \"pipelines/ph.toml\"\n".into(),
        pipeline: Some((
            "ph.toml",
            "[source]\nvideo = \"v4l2src device=${dev}\"\naudio = \"audiotestsrc\"\n",
        )),
        env: vec![],
        expect: vec!["ph.toml", "source.video", "${dev}"],
    });
    cases.push(bad(
        "status page off loopback without a token",
        &with_demo("[metrics]\nlisten = \"0.0.0.0:9464\""),
        &["metrics.token_file", "not a loopback address"],
    ));
    cases.push(bad(
        "a token file that is not there",
        &with_demo("[metrics]\ntoken_file = \"/nonexistent/avscene-token\""),
        &[
            "metrics.token_file",
            "cannot read /nonexistent/avscene-token",
        ],
    ));
    cases.push(bad(
        "attributes every 0 s",
        &with_demo("[mqtt]\nattributes_every_s = 0"),
        &["mqtt.attributes_every_s", "1..=86400"],
    ));
    cases.push(bad(
        "unknown record key",
        &with_demo("[record]\nfolder = \"x\""),
        &["record.folder", "unknown field"],
    ));
    cases.push(Bad {
        what: "bad value from the environment",
        config: DEMO_STREAM.into(),
        pipeline: None,
        env: vec![("AVSCENE__INFERENCE__MAX_BATCH", "0")],
        expect: vec!["inference.max_batch", "AVSCENE__INFERENCE__MAX_BATCH"],
    });
    cases.push(Bad {
        what: "wrong type from the environment",
        config: DEMO_STREAM.into(),
        pipeline: None,
        env: vec![("AVSCENE__MQTT__PORT", "lots")],
        expect: vec!["mqtt.port", "environment variable AVSCENE__MQTT__PORT"],
    });
    cases
}

#[test]
fn bad_configs_name_the_file_key_and_reason() {
    let cases = bad_configs();
    assert!(cases.len() >= 15);
    for case in cases {
        let layout = Layout::new();
        if let Some((name, text)) = case.pipeline {
            layout.pipeline(name, text);
        }
        let path = layout.config(&case.config);
        let vars = env(&case.env);
        let error = match Settings::load_with_env(&path, vars) {
            Ok(_) => panic!("{}: accepted", case.what),
            Err(e) => e.to_string(),
        };
        let names_origin =
            error.contains(&path.display().to_string()) || error.contains("environment variable");
        assert!(
            names_origin,
            "{}: error does not name the file: {error}",
            case.what
        );
        for needle in &case.expect {
            assert!(
                error.contains(needle),
                "{}: error lacks '{needle}': {error}",
                case.what
            );
        }
    }
}

#[test]
fn off_loopback_the_page_needs_a_token_of_16_characters_taken_beside_the_config() {
    let layout = Layout::new();
    let dir = layout.config("").parent().unwrap().to_path_buf();
    std::fs::write(dir.join("short-token"), "abc\n").unwrap();
    std::fs::write(dir.join("web-token"), "0123456789abcdef-token\n").unwrap();
    let short = layout.config(&format!(
        "[metrics]\nlisten = \"0.0.0.0:9464\"\ntoken_file = \"short-token\"\n{DEMO_STREAM}"
    ));
    let error = load(&short).unwrap_err().to_string();
    assert!(
        error.contains("metrics.token_file") && error.contains("at least 16"),
        "{error}"
    );
    let good = layout.config(&format!(
        "[metrics]\nlisten = \"0.0.0.0:9464\"\ntoken_file = \"web-token\"\n[record]\ndataset = \"scenes\"\n{DEMO_STREAM}"
    ));
    let settings = load(&good).unwrap();
    assert_eq!(
        settings.config.metrics.token_file,
        Some(dir.join("web-token"))
    );
    assert_eq!(
        settings.config.record.dataset_dir(),
        dir.join("scenes"),
        "relative to the config"
    );
}

#[test]
fn several_problems_are_reported_together() {
    let layout = Layout::new();
    let path = layout.config(&format!(
        "[mqtt]\nport = 0\n[inference]\nmax_batch = 0\n{DEMO_STREAM}"
    ));
    let Err(ConfigError::Invalid { problems, .. }) = load(&path) else {
        panic!("accepted")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["mqtt.port", "inference.max_batch"]);
}

#[test]
fn check_config_lists_every_unknown_key_and_bad_value_of_a_file_in_one_run() {
    let layout = Layout::new();
    let path = layout.config(&format!(
        "[mqtt]\nhots = \"x\"\nport = 0\nkeep_alive = 30\n[inference]\naudio_stride = 0\n\
         stale_after_s = inf\nmax_bach = 4\n[window]\nhop_s = \"one\"\n[colour]\nx = 1\n{DEMO_STREAM}"
    ));
    let out = avscene(&["check-config", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for key in [
        "mqtt.hots",
        "mqtt.keep_alive",
        "inference.max_bach",
        "colour",
        "window.hop_s",
        "mqtt.port",
        "inference.audio_stride",
        "inference.stale_after_s",
    ] {
        assert!(
            stderr.contains(&format!("`{key}`")),
            "{key} missing: {stderr}"
        );
    }
    assert!(stderr.contains("8 problems"), "{stderr}");
    // A required key of a stream that is missing is one problem, not a cascade.
    let path = layout.config("[[stream]]\nname = \"a\"\npipline = \"pipelines/test.toml\"\n");
    let out = avscene(&["check-config", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("stream[0].pipline") && !stderr.contains("problems:"),
        "{stderr}"
    );
}

#[test]
fn a_stride_of_zero_is_an_error_for_every_command_that_reads_the_config() {
    let layout = Layout::new();
    let path = layout.config(&format!("[inference]\naudio_stride = 0\n{DEMO_STREAM}"));
    let config = path.to_str().unwrap();
    let out = layout.dir.path().join("rec");
    let out = out.to_str().unwrap();
    for args in [
        vec!["check-config", "--config", config],
        vec!["run", "--config", config],
        vec!["capture", "--config", config, "--seconds", "1"],
        vec![
            "record",
            "--config",
            config,
            "--label",
            "x",
            "--minutes",
            "1",
            "--out",
            out,
        ],
    ] {
        let run = avscene(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("inference.audio_stride"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let error = load(Path::new("/nonexistent/avscene.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/nonexistent/avscene.toml") && error.contains("cannot read"),
        "{error}"
    );
}

fn avscene(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn check_config_exits_0_with_a_summary_and_2_with_the_reason() {
    let shipped = format!("{REPO}/config/avscene.toml");
    let ok = avscene(&["check-config", "--config", &shipped, "--show-pipelines"]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("is valid")
            && stdout.contains("demo")
            && stdout.contains("gst-launch-1.0 videotestsrc"),
        "{stdout}"
    );

    let layout = Layout::new();
    for case in bad_configs().into_iter().filter(|c| c.env.is_empty()) {
        if let Some((name, text)) = case.pipeline {
            layout.pipeline(name, text);
        }
        let path = layout.config(&case.config);
        let out = avscene(&["check-config", "--config", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", case.what);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.what);
        assert!(stderr.contains(case.expect[0]), "{}: {stderr}", case.what);
    }
    let missing = avscene(&["check-config", "--config", "/nonexistent/x.toml"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn help_lists_the_subcommands() {
    let out = avscene(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("check-config"), "{text}");
    let out = avscene(&["check-config", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--config"));
}

#[test]
fn check_config_loads_the_model_file_and_checks_the_device() {
    let layout = Layout::new();
    let bogus = layout.dir.path().join("model.safetensors");
    std::fs::write(&bogus, b"not a model").unwrap();
    let path = layout.config(&format!(
        "[model]\npath = \"{}\"\n{DEMO_STREAM}",
        bogus.display()
    ));
    let out = avscene(&["check-config", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("model.path") && stderr.contains("not a safetensors model file"),
        "{stderr}"
    );

    let good = layout.dir.path().join("small.safetensors");
    avscene::model::Model::fresh(avscene::model::ModelSpec::small(), tch::Device::Cpu)
        .save(&good)
        .unwrap();
    let path = layout.config(&format!(
        "[model]\npath = \"{}\"\n{DEMO_STREAM}",
        good.display()
    ));
    let out = avscene(&["check-config", "--config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    if tch::Cuda::device_count() == 0 {
        let path = layout.config(&format!("[model]\ndevice = \"cuda:0\"\n{DEMO_STREAM}"));
        let out = avscene(&["check-config", "--config", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("model.device") && stderr.contains("no CUDA device"),
            "{stderr}"
        );
    }
}

/// `avscene check-config --config FILE`, run in `cwd`.
fn check_config_in(cwd: &Path, file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(["check-config", "--config"])
        .arg(file)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn relative_paths_resolve_from_the_config_files_real_folder_then_installed_and_shipped_ones() {
    // A bare file name, from inside the folder: the model and both pipelines are found.
    let run = check_config_in(&Path::new(REPO).join("config"), Path::new("demo.toml"));
    let said =
        String::from_utf8_lossy(&run.stdout).to_string() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{said}");
    // A configuration far from the repository still names the shipped pipelines.
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("lone.toml");
    std::fs::write(
        &lone,
        "[[stream]]\nname = \"demo\"\npipeline = \"pipelines/test.toml\"\n[[stream]]\nname = \"short\"\npipeline = \"test.toml\"\n",
    )
    .unwrap();
    let settings = load(&lone).unwrap();
    // The installed one (/etc/avscene/pipelines/) where there is one, else the repository's.
    assert!(
        settings.streams[0]
            .pipeline_file
            .ends_with("pipelines/test.toml")
            && settings.streams[0].pipeline_file.is_file(),
        "{:?}",
        settings.streams[0].pipeline_file
    );
    assert_eq!(
        settings.streams[1].pipeline_file,
        settings.streams[0].pipeline_file
    );
    // A symlink to a configuration: its pipelines are looked for where the file really is.
    let layout = Layout::new();
    layout.pipeline(
        "mine.toml",
        &std::fs::read_to_string(Path::new(REPO).join("pipelines/test.toml")).unwrap(),
    );
    let real = layout.config("[[stream]]\nname = \"mine\"\npipeline = \"pipelines/mine.toml\"\n");
    let link = dir.path().join("linked.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let settings = load(&link).unwrap();
    assert!(
        settings.streams[0]
            .pipeline_file
            .ends_with("pipelines/mine.toml")
    );
}

#[test]
fn files_and_devices_that_are_not_there_are_warnings_and_a_bare_path_becomes_a_uri() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clip.mp4"), b"stand-in").unwrap();
    let config = dir.path().join("avscene.toml");
    std::fs::write(
        &config,
        "[[stream]]\nname = \"clip\"\npipeline = \"pipelines/file.toml\"\nparams = { uri = \"clip.mp4\" }\n\
         [[stream]]\nname = \"gone\"\npipeline = \"pipelines/file.toml\"\nparams = { uri = \"file:///nonexistent/x.mp4\" }\n\
         [[stream]]\nname = \"cam\"\npipeline = \"pipelines/camera-mic.toml\"\nparams = { video_device = \"/dev/video77\" }\n",
    )
    .unwrap();
    let settings = load(&config).unwrap();
    let uri = format!(
        "file://{}",
        std::fs::canonicalize(dir.path())
            .unwrap()
            .join("clip.mp4")
            .display()
    );
    assert!(
        settings.streams[0].launch.contains(&uri),
        "{}",
        settings.streams[0].launch
    );
    let warnings: Vec<String> = settings
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.key, w.reason))
        .collect();
    let expect = [
        format!("stream[0].params.uri: 'clip.mp4' is a path, not a URI: taken as {uri}"),
        "stream[1].params.uri: file:///nonexistent/x.mp4: no such file".to_string(),
        "stream[2].params.video_device: /dev/video77: no such device now".to_string(),
    ];
    for e in &expect {
        assert!(
            warnings.iter().any(|w| w.starts_with(e.as_str())),
            "{e}: {warnings:?}"
        );
    }
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    // check-config says them and still passes: cameras come and go.
    let run = check_config_in(dir.path(), &config);
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(out.matches("warning: ").count(), 3, "{out}");
}
