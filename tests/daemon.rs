//! `avscene run` as a process: labels reach a real broker, SIGTERM stops it cleanly
//! (`stopped`, exit 0), a hard kill leaves `offline` by Last Will, and a SIGHUP with a
//! broken configuration keeps the running one.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, first_message};

fn write_config(dir: &Path, port: u16, extra: &str) -> std::path::PathBuf {
    let settings = format!(
        "[mqtt]\nport = {port}\nclient_id = \"avscene-daemon-{port}\"\n\
         [model]\nprofile = \"small\"\ndevice = \"cpu\"\n{extra}"
    );
    common::demo_config(dir, &settings)
}

fn daemon(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, name: &str) {
    assert!(
        Command::new("kill")
            .args([name, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

fn wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
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
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon died on a bad reload"
    );

    signal(&child, "-TERM");
    let status = wait(&mut child, Duration::from_secs(20)).expect("the daemon did not stop");
    assert!(status.success(), "{status:?}");
    assert_eq!(first_message(broker.port, "avscene/status", 2), "stopped");
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("SIGHUP: invalid configuration") && stderr.contains("mqtt.port"),
        "{stderr}"
    );
}

#[test]
fn a_killed_daemon_is_offline_by_last_will() {
    let broker = Broker::start("allow_anonymous true");
    let dir = common::tempdir();
    let mut child = daemon(&write_config(dir.path(), broker.port, ""));
    assert_eq!(first_message(broker.port, "avscene/status", 30), "online");
    signal(&child, "-KILL");
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(first_message(broker.port, "avscene/status", 2), "offline");
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
