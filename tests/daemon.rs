//! `avscene run` as a process against a real broker: labels arrive at the expected rate,
//! `/metrics` and `/health` answer, sd_notify messages reach a socket the test owns,
//! SIGTERM stops it cleanly (`stopped`, exit 0), a hard kill leaves `offline` by Last
//! Will, SIGHUP adds and removes streams or keeps the running configuration when the new
//! one is broken, and a dead source leaves the other streams publishing.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Broker, first_message, messages};

/// The settings of a test daemon (small model, metrics on `metrics_port`), then `extra`.
fn settings(port: u16, metrics_port: u16, extra: &str) -> String {
    format!(
        "[mqtt]\nport = {port}\nclient_id = \"avscene-daemon-{port}\"\n\
         [model]\nprofile = \"small\"\ndevice = \"cpu\"\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{extra}"
    )
}

fn write_config(dir: &Path, port: u16, extra: &str) -> std::path::PathBuf {
    common::demo_config(dir, &settings(port, common::free_port(), extra))
}

fn daemon(config: &Path) -> Daemon {
    daemon_with(config, &[])
}

fn daemon_with(config: &Path, env: &[(&str, &str)]) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(["run", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its log, read as it comes, so a test can wait for a line instead of sleeping.
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut log) = sink.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    Daemon {
        child,
        log,
        reader: Some(reader),
    }
}

/// A running `avscene run` and its log.
struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Its log so far (all of it once the process has ended).
    fn log(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_some() {
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
        }
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Wait up to `seconds` for a log line containing `text`.
    fn wait_for_log(&mut self, text: &str, seconds: f64) -> bool {
        let log = self.log.clone();
        common::wait_until(seconds, || log.lock().is_ok_and(|l| l.contains(text)))
    }
}

/// GET `path` from the daemon's metrics endpoint: (status code, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    common::http(port, "GET", path, &[], "")
}

/// Poll `path` until `pred` holds, for up to `seconds`; returns the last answer.
fn http_until(
    port: u16,
    path: &str,
    seconds: u64,
    pred: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let until = Instant::now() + Duration::from_secs(seconds);
    loop {
        let answer = std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| http_get(port, path))
            .unwrap_or((0, String::new()));
        if pred(answer.0, &answer.1) || Instant::now() > until {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The value of one sample in a Prometheus text page (`name{labels}` exactly).
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// SIGTERM: the daemon must exit 0 within its 5 s stop limit (8 s here, for a loaded
/// machine); otherwise it is killed and its log shown.
fn terminate(daemon: &mut Daemon) {
    signal(daemon, "-TERM");
    match wait(&mut daemon.child, Duration::from_secs(8)) {
        Some(status) => assert!(status.success(), "{status:?}: {}", daemon.log()),
        None => {
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
            panic!("no exit within 8 s of SIGTERM:\n{}", daemon.log());
        }
    }
}

fn signal(daemon: &Daemon, name: &str) {
    assert!(
        Command::new("kill")
            .args([name, &daemon.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

fn wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    common::wait_until(limit.as_secs_f64(), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

#[test]
fn labels_reach_the_broker_and_sigterm_stops_cleanly() {
    let broker = Broker::start("allow_anonymous true");
    let dir = common::tempdir();
    let config = write_config(dir.path(), broker.port, "");
    let mut child = daemon(&config);
    let scene = first_message(broker.port, "avscene/demo/scene", 60);
    let v: serde_json::Value =
        serde_json::from_str(&scene).unwrap_or_else(|e| panic!("{e}: {scene:?}"));
    assert_eq!(v["stream"], "demo");
    assert_eq!(v["probabilities"].as_object().unwrap().len(), 10);
    assert_eq!(first_message(broker.port, "avscene/status", 2), "online");

    // A broken configuration on SIGHUP is refused; the daemon keeps running.
    std::fs::write(&config, "[mqtt]\nport = 0\n").unwrap();
    signal(&child, "-HUP");
    assert!(
        child.wait_for_log("SIGHUP: invalid configuration", 10.0),
        "{}",
        child.log()
    );
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "the daemon died on a bad reload"
    );

    terminate(&mut child);
    assert_eq!(first_message(broker.port, "avscene/status", 2), "stopped");
    let stderr = child.log();
    assert!(stderr.contains("mqtt.port"), "{stderr}");
}

#[test]
fn a_killed_daemon_is_offline_by_last_will() {
    let broker = Broker::start("allow_anonymous true");
    let dir = common::tempdir();
    let mut child = daemon(&write_config(dir.path(), broker.port, ""));
    assert_eq!(first_message(broker.port, "avscene/status", 30), "online");
    signal(&child, "-KILL");
    let _ = child.child.wait();
    let status = common::retained_when(broker.port, "avscene/status", 5.0, |s| s == "offline");
    assert_eq!(status, "offline");
}

#[test]
fn a_bad_configuration_is_refused_at_start() {
    let dir = common::tempdir();
    let config = write_config(dir.path(), 1883, "[window]\nhop_s = 20.0");
    let out = Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("window.hop_s"));
}

#[test]
fn metrics_health_and_sd_notify() {
    let broker = Broker::start("allow_anonymous true");
    let dir = common::tempdir();
    let metrics_port = common::free_port();
    let config = common::demo_config(dir.path(), &settings(broker.port, metrics_port, ""));
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    // Read as systemd does, all along (an unread socket fills after ~10 datagrams).
    let (notes_tx, notes_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    if notes_tx
                        .send(String::from_utf8_lossy(&buf[..n]).to_string())
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    });
    let mut child = daemon_with(
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );

    // Before the first window is full, the daemon is starting: 200 (a supervisor leaves
    // it be), and said.
    let (status, health) = http_until(metrics_port, "/health", 30, |s, _| s != 0);
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "starting", "{health}");
    assert_eq!(health["streams"]["demo"]["starting"], true, "{health}");

    // A label per window, windows a hop (1 s) apart: consecutive sequence numbers are
    // 1 s apart in time (a window dropped under load leaves a gap of whole hops).
    let burst = messages(broker.port, "avscene/demo/scene", 6, 60);
    assert_eq!(burst.len(), 6, "{burst:?}");
    let scenes: Vec<serde_json::Value> = burst
        .iter()
        .map(|line| serde_json::from_str(line.split_once(' ').unwrap().1).unwrap())
        .collect();
    for pair in scenes.windows(2) {
        let seq = |v: &serde_json::Value| v["seq"].as_u64().unwrap();
        let start =
            |v: &serde_json::Value| humantime::parse_rfc3339(v["start"].as_str().unwrap()).unwrap();
        assert_eq!(pair[0]["stream"], "demo");
        assert!(seq(&pair[1]) > seq(&pair[0]), "{pair:?}");
        let apart = start(&pair[1]).duration_since(start(&pair[0])).unwrap();
        let hops = (seq(&pair[1]) - seq(&pair[0])) as f64;
        assert!(
            (apart.as_secs_f64() - hops).abs() < 0.05,
            "{apart:?} for {hops} hops"
        );
    }
    // Windows keep being assembled (the rate is a benchmark's business, not a test's).
    let windows =
        |page: &str| metric(page, "avscene_stream_windows_total{stream=\"demo\"}").unwrap();
    let before = windows(&http_get(metrics_port, "/metrics").1);
    let (_, page) = http_until(metrics_port, "/metrics", 30, |_, p| {
        windows(p) >= before + 3.0
    });
    assert!(windows(&page) >= before + 3.0, "{page}");

    let (status, page) = http_until(metrics_port, "/metrics", 10, |_, p| {
        metric(p, "avscene_mqtt_connected") == Some(1.0)
    });
    assert_eq!(status, 200);
    let classified = metric(&page, "avscene_windows_classified_total{stream=\"demo\"}").unwrap();
    assert!(classified >= 6.0, "{page}");
    assert_eq!(metric(&page, "avscene_mqtt_connected"), Some(1.0));
    assert!(metric(&page, "avscene_inference_latency_seconds_count").unwrap() >= classified);
    assert!(metric(&page, "avscene_inference_batch_size_count").unwrap() >= 1.0);
    assert!(metric(&page, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(page.contains(
        "avscene_model_info{model_id=\"small-untrained\",profile=\"small\",device=\"cpu\""
    ));
    let (status, health) = http_get(metrics_port, "/health");
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["streams"]["demo"]["ok"], true);
    assert_eq!(health["streams"]["demo"]["starting"], false);
    assert_eq!(http_get(metrics_port, "/nothing").0, 404);

    terminate(&mut child);

    // Every datagram up to STOPPING=1, the last one the daemon sends.
    let mut notes: Vec<String> = Vec::new();
    while let Ok(note) = notes_rx.recv_timeout(Duration::from_secs(5)) {
        let last = note.contains("STOPPING=1");
        notes.push(note);
        if last {
            break;
        }
    }
    let all = notes.join("\n");
    assert!(notes[0].starts_with("READY=1"), "{all}");
    assert!(all.contains("STATUS=1/1 streams live"), "{all}");
    assert!(all.contains("mqtt connected"), "{all}");
    assert!(all.contains("WATCHDOG=1"), "{all}");
    assert!(notes.last().unwrap().contains("STOPPING=1"), "{all}");
}

#[test]
fn sighup_adds_and_removes_streams() {
    let broker = Broker::start("allow_anonymous true");
    let dir = common::tempdir();
    let metrics_port = common::free_port();
    let base = settings(broker.port, metrics_port, "");
    let config = common::demo_config(dir.path(), &base);
    let mut child = daemon(&config);
    assert_eq!(messages(broker.port, "avscene/demo/scene", 1, 60).len(), 1);

    // Add a second stream (another pattern and sound).
    let second = "[[stream]]\nname = \"second\"\npipeline = \"pipelines/test.toml\"\n\
                  params = { pattern = \"smpte\", wave = \"sine\" }\n";
    let with_second = format!("{}\n{second}", std::fs::read_to_string(&config).unwrap());
    std::fs::write(&config, &with_second).unwrap();
    signal(&child, "-HUP");
    assert_eq!(
        messages(broker.port, "avscene/second/scene", 1, 60).len(),
        1
    );
    assert_eq!(messages(broker.port, "avscene/demo/scene", 1, 10).len(), 1);
    let discovery = "homeassistant/sensor/avscene_second/scene/config";
    assert!(first_message(broker.port, discovery, 2).contains("avscene/second/state"));
    let (status, health) = http_until(metrics_port, "/health", 20, |s, _| s == 200);
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"second\""), "{health}");

    // Remove the first: it stops and leaves Home Assistant; the second goes on.
    let only_second = with_second.replace(
        "[[stream]]\nname = \"demo\"\npipeline = \"pipelines/test.toml\"\n",
        "",
    );
    assert_ne!(only_second, with_second);
    std::fs::write(&config, &only_second).unwrap();
    signal(&child, "-HUP");
    assert!(
        child.wait_for_log("stream 'demo': removed", 10.0),
        "{}",
        child.log()
    );
    let gone = "homeassistant/sensor/avscene_demo/scene/config";
    assert_eq!(
        common::retained_when(broker.port, gone, 10.0, str::is_empty),
        ""
    );
    assert_eq!(
        messages(broker.port, "avscene/demo/scene", 1, 3).len(),
        0,
        "demo still publishes"
    );
    assert_eq!(
        messages(broker.port, "avscene/second/scene", 1, 10).len(),
        1
    );
    let (_, page) = http_get(metrics_port, "/metrics");
    assert!(!page.contains("stream=\"demo\""), "{page}");

    terminate(&mut child);
}

#[test]
fn daemons_sharing_a_client_id_are_told_so_and_default_ids_never_collide() {
    let broker = Broker::start("allow_anonymous true");
    let (one, two) = (common::tempdir(), common::tempdir());
    // The same configured client id: the broker keeps closing one to let the other in.
    let mut a = daemon(&write_config(one.path(), broker.port, ""));
    let mut b = daemon(&write_config(two.path(), broker.port, ""));
    let hint = "same client id";
    let (log_a, log_b) = (a.log.clone(), b.log.clone());
    let told = common::wait_until(60.0, || {
        [&log_a, &log_b]
            .iter()
            .any(|l| l.lock().is_ok_and(|l| l.contains(hint)))
    });
    assert!(told, "a:\n{}\nb:\n{}", a.log(), b.log());
    terminate(&mut a);
    terminate(&mut b);

    // The default client id (empty): each process its own; both publish side by side.
    let default_id = [("AVSCENE__MQTT__CLIENT_ID", "")];
    let mut a = daemon_with(&write_config(one.path(), broker.port, ""), &default_id);
    let mut b = daemon_with(&write_config(two.path(), broker.port, ""), &default_id);
    let mut runs = std::collections::BTreeSet::new();
    common::wait_until(90.0, || {
        for m in messages(broker.port, "avscene/demo/scene", 4, 5) {
            let payload = m.split_once(' ').map(|(_, p)| p).unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) {
                runs.insert(v["run"].as_str().unwrap_or_default().to_string());
            }
        }
        runs.len() >= 2
    });
    assert_eq!(runs.len(), 2, "scene messages from both daemons: {runs:?}");
    for d in [&mut a, &mut b] {
        assert!(!d.log().contains(hint), "{}", d.log());
        terminate(d);
    }
}

#[test]
fn a_dead_source_leaves_the_others_publishing() {
    let broker = Broker::start("allow_anonymous true");
    let dir = common::tempdir();
    let metrics_port = common::free_port();
    // The shipped file pipeline on a file that is not there: it fails at every start.
    let broken = "[[stream]]\nname = \"gone\"\npipeline = \"pipelines/file.toml\"\n\
                  params = { uri = \"file:///nonexistent/clip.mp4\" }\n";
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/file.toml");
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::copy(shipped, dir.path().join("pipelines/file.toml")).unwrap();
    let config = common::demo_config(dir.path(), &settings(broker.port, metrics_port, broken));
    let mut child = daemon(&config);
    assert_eq!(messages(broker.port, "avscene/demo/scene", 3, 60).len(), 3);
    let (status, health) = http_until(metrics_port, "/health", 40, |s, _| s == 503);
    assert_eq!(status, 503, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["streams"]["demo"]["ok"], true, "{health}");
    assert_eq!(health["streams"]["gone"]["ok"], false, "{health}");
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("gone") && reasons.contains("source failing"),
        "{reasons}"
    );
    let (_, page) = http_until(metrics_port, "/metrics", 30, |_, p| {
        metric(p, "avscene_stream_restarts_total{stream=\"gone\"}").unwrap_or(0.0) >= 3.0
    });
    assert!(
        metric(&page, "avscene_stream_restarts_total{stream=\"gone\"}").unwrap() >= 3.0,
        "{page}"
    );
    // Its error is logged once, not at every restart.
    let log = child.log();
    let said = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("stream 'gone'"))
        .count();
    assert_eq!(said, 1, "{log}");
    // In Home Assistant the failing camera is unavailable, the other one is not.
    let availability = |stream: &str, want: &'static str| {
        let topic = format!("avscene/{stream}/availability");
        common::retained_when(broker.port, &topic, 10.0, |p| p == want)
    };
    assert_eq!(availability("gone", "offline"), "offline");
    assert_eq!(availability("demo", "online"), "online");
    terminate(&mut child);
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        common::cannot_run("systemd-analyze", "systemd-analyze is not installed");
        return;
    };
    assert!(probe.status.success());
    // The unit names the installed binary; point it at the one under test.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/avscene.service"
    ))
    .unwrap()
    .replace("/usr/local/bin/avscene", env!("CARGO_BIN_EXE_avscene"));
    let dir = common::tempdir();
    let path = dir.path().join("avscene.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !said.contains("avscene.service"),
        "{said}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=30"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 3.0:\n{report}");
    println!("{}", report.lines().last().unwrap_or(""));
}

#[test]
fn a_recording_asked_for_over_mqtt_writes_clips_and_reports_its_progress() {
    let broker = Broker::start("allow_anonymous true");
    let dir = common::tempdir();
    let dataset = dir.path().join("scenes");
    let extra = format!("[record]\ndataset = \"{}\"\n", dataset.display());
    let config = write_config(dir.path(), broker.port, &extra);
    let mut daemon = daemon(&config);
    assert!(
        daemon.wait_for_log("avscene running", 60.0),
        "{}",
        daemon.log()
    );
    let state_topic = "avscene/demo/record/state";
    let publish = |payload: &str| {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(["-t", "avscene/demo/record/set", "-q", "1", "-m", payload])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // A command that cannot be is answered on the state topic, with the reason.
    publish(r#"{"label": "../up", "minutes": 1}"#);
    let refused = common::retained_when(broker.port, state_topic, 20.0, |s| s.contains("refused"));
    assert!(refused.contains("label '../up'"), "{refused}");
    // One clip (0.17 min), written whole and reported done.
    publish(r#"{"label": "parcel", "minutes": 0.17}"#);
    let done = common::retained_when(broker.port, state_topic, 40.0, |s| s.contains("\"done\""));
    let v: serde_json::Value =
        serde_json::from_str(&done).unwrap_or_else(|e| panic!("{e}: {done}"));
    assert_eq!(v["clips"], 1, "{v}");
    assert_eq!(v["target"], 1, "{v}");
    let clips: Vec<_> = std::fs::read_dir(dataset.join("parcel"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        clips.iter().filter(|c| c.ends_with(".wav")).count(),
        1,
        "{clips:?}"
    );
    assert_eq!(
        clips.iter().filter(|c| c.ends_with(".mkv")).count(),
        1,
        "{clips:?}"
    );
    assert!(!clips.iter().any(|c| c.ends_with(".partial")), "{clips:?}");
    let index = std::fs::read_to_string(dataset.join("recordings.csv")).unwrap();
    assert_eq!(index.lines().count(), 2, "the header and one clip: {index}");
    terminate(&mut daemon);
}

#[test]
fn a_recording_goes_on_across_a_restart_of_the_source_and_counts_the_clip_it_cut() {
    let broker = Broker::start("allow_anonymous true");
    let dir = common::tempdir();
    let dataset = dir.path().join("scenes");
    // A live source that ends after 11.5 s and is restarted at once: one run gives at
    // most one 10 s clip, so two clips need a restart in between.
    let ends = dir.path().join("ends.toml");
    std::fs::write(
        &ends,
        "live = true\n[source]\n\
         video = \"videotestsrc is-live=true num-buffers=115 ! video/x-raw,width=160,height=120,framerate=10/1\"\n\
         audio = \"audiotestsrc is-live=true num-buffers=115 samplesperbuffer=4800 ! audio/x-raw,rate=48000,channels=1\"\n",
    )
    .unwrap();
    let metrics_port = common::free_port();
    let extra = format!(
        "[record]\ndataset = \"{}\"\n[capture]\nrestart_initial_s = 0.2\n\
         [[stream]]\nname = \"door\"\npipeline = \"{}\"\n",
        dataset.display(),
        ends.display()
    );
    let config = dir.path().join("avscene.toml");
    std::fs::write(&config, settings(broker.port, metrics_port, &extra)).unwrap();
    let mut daemon = daemon(&config);
    assert!(
        daemon.wait_for_log("avscene running", 60.0),
        "{}",
        daemon.log()
    );
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", "avscene/door/record/set", "-q", "1"])
        .args(["-m", r#"{"label": "door", "minutes": 0.34}"#])
        .status()
        .unwrap();
    assert!(status.success());
    let done = common::retained_when(broker.port, "avscene/door/record/state", 60.0, |s| {
        s.contains("\"done\"")
    });
    let v: serde_json::Value =
        serde_json::from_str(&done).unwrap_or_else(|e| panic!("{e}: {done}\n{}", daemon.log()));
    assert_eq!(v["clips"], 2, "{v}");
    assert!(
        v["skipped"].as_u64().unwrap() >= 1,
        "the restart cut a clip short: {v}"
    );
    let (_, page) = http_get(metrics_port, "/metrics");
    assert!(
        metric(&page, "avscene_stream_restarts_total{stream=\"door\"}").unwrap() >= 1.0,
        "{page}"
    );
    let index = std::fs::read_to_string(dataset.join("recordings.csv")).unwrap();
    assert_eq!(
        index.lines().count(),
        3,
        "the header and two clips: {index}"
    );
    let clips = std::fs::read_dir(dataset.join("door")).unwrap().count();
    assert_eq!(clips, 4, "two WAVs and two videos");
    terminate(&mut daemon);
}
