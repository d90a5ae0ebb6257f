//! Helpers shared by the integration tests.
#![allow(dead_code)]

use tch::{Device, Kind, Tensor, nn};

/// `sin(arange(n) * step + phase)`: computed by the same libtorch kernels as
/// tests/parity/reference.py, so both sides get identical bits.
pub fn wave(n: i64, phase: f64, step: f64) -> Tensor {
    (Tensor::arange(n, (Kind::Float, Device::Cpu)) * step + phase).sin()
}

/// Deterministic input of `shape` (reference.py's `input_tensor`).
pub fn input_tensor(shape: &[i64], phase: f64, scale: f64, step: f64) -> Tensor {
    wave(shape.iter().product(), phase, step).view(shape) * scale
}

/// Set every variable but the front end's buffers from sines, as reference.py's
/// `deterministic_` does; returns the names in the order used.
pub fn deterministic_init(vs: &nn::VarStore) -> Vec<String> {
    let vars = vs.variables();
    let mut names: Vec<String> = vars
        .keys()
        .filter(|k| !k.contains("speclayer"))
        .cloned()
        .collect();
    names.sort();
    tch::no_grad(|| {
        for (i, name) in names.iter().enumerate() {
            let var = &vars[name];
            let size = var.size();
            let base = wave(var.numel() as i64, i as f64 * 1.3, 0.37).view(size.as_slice());
            let value = if name.ends_with("running_var") {
                &base * &base * 0.5 + 1.0
            } else if name.ends_with("running_mean") {
                base * 0.1
            } else if name.ends_with("bias") {
                base * 0.02
            } else if size.len() == 1 {
                base * 0.1 + 1.0
            } else {
                let fan_in = var.numel() as i64 / size[0];
                base * (1.2 / (fan_in as f64).sqrt())
            };
            var.shallow_clone().copy_(&value);
        }
    });
    names
}

/// Largest absolute difference relative to the reference's largest magnitude.
pub fn rel_diff(a: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(a.size(), reference.size(), "shapes differ");
    let scale = reference.abs().max().double_value(&[]).max(1e-3);
    (a - reference).abs().max().double_value(&[]) / scale
}

/// Run the avscene binary to its end (RUST_LOG from the caller's environment ignored).
pub fn avscene(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// What a finished command printed: stdout, then stderr.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run a gst-launch-1.0 pipeline to its end (written on one line, elements split at
/// spaces); panics with GStreamer's message when it fails.
pub fn gst(launch: &str) {
    let out = std::process::Command::new("gst-launch-1.0")
        .args(["-q", "-e"])
        .args(launch.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{launch}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tensors of a model file whose names start with one of `prefixes`, as raw bytes.
pub fn tensors(path: &std::path::Path, prefixes: &[&str]) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p)))
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .collect();
    out.sort();
    out
}

/// A scratch directory removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Consecutive windows of a synthetic stream (1 s hop): a tone over noise whose pitch
/// changes every second, and a different image every second.
pub fn synthetic_windows(stream: &str, seconds: u64, seed: u64) -> Vec<avscene::window::Window> {
    use avscene::features::IMAGE_BYTES;
    use avscene::window::{Assembler, WindowConfig};
    let mut assembler = Assembler::new(stream, &WindowConfig::default());
    let mut out = Vec::new();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    for tenth in 0..seconds * 10 {
        let second = tenth / 10;
        let pts = tenth * 100_000_000;
        if tenth % 10 == 0 {
            let frame: Vec<u8> = (0..IMAGE_BYTES)
                .map(|i| ((i as u64 * (second + seed + 1) / 97) % 256) as u8)
                .collect();
            out.extend(assembler.push_frame(pts, std::sync::Arc::from(frame)));
        }
        let freq = 200.0 + 50.0 * ((second + seed) % 7) as f32;
        let samples: Vec<f32> = (0..4800)
            .map(|i| {
                let t = (tenth * 4800 + i) as f32 / 48_000.0;
                0.3 * (2.0 * std::f32::consts::PI * freq * t).sin() + 0.05 * noise()
            })
            .collect();
        out.extend(assembler.push_audio(pts, &samples));
    }
    out
}

/// A mosquitto broker of the test's own on 127.0.0.1, on a free port; stopped on drop.
pub struct Broker {
    pub port: u16,
    child: std::process::Child,
    conf: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Start mosquitto with `extra` configuration lines (the listener is added here), on
    /// a free port: one that another process takes first is given up for another.
    pub fn start(extra: &str) -> Broker {
        let dir = tempdir();
        let conf = dir.path().join("mosquitto.conf");
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            std::fs::write(
                &conf,
                format!("listener {port} 127.0.0.1\npersistence false\n{extra}\n"),
            )
            .unwrap();
            if let Some(child) = Self::spawn(&conf) {
                return Broker {
                    port,
                    child,
                    conf,
                    _dir: dir,
                };
            }
        }
        panic!("mosquitto found no free port in 20 tries");
    }

    /// Run mosquitto on `conf`; `None` when it cannot listen (the port was taken). It
    /// says "running" once its listener is open — ours, not another process's.
    fn spawn(conf: &std::path::Path) -> Option<std::process::Child> {
        use std::io::BufRead;
        let mut child = std::process::Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("mosquitto (scripts/setup.sh installs it)");
        let mut log = std::io::BufReader::new(child.stderr.take()?).lines();
        let running = log
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains(" running") || l.contains("Error"))
            .is_some_and(|l| l.contains(" running"));
        // Keep reading its log, or a full pipe would stall it.
        std::thread::spawn(move || log.for_each(drop));
        if running {
            Some(child)
        } else {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }

    /// Stop the broker as its service manager would (SIGTERM: it saves its persistence).
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let _ = self.child.wait();
    }

    /// Freeze the broker (SIGSTOP): its connections stay open and nothing answers, as
    /// with a hung broker or a half-open connection.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Let a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Start it again on the same port with the same configuration.
    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.conf).expect("mosquitto restarts on its port");
    }

    /// A directory for files the broker configuration refers to, readable by the
    /// `mosquitto` user the broker drops to when started as root.
    pub fn shared_dir() -> tempfile::TempDir {
        let dir = tempdir();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write `dir/avscene.toml`: `text`, then a stream "demo" on a copy of the shipped test
/// pipeline.
pub fn demo_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/test.toml");
    std::fs::copy(shipped, dir.join("pipelines/test.toml")).unwrap();
    let path = dir.join("avscene.toml");
    let stream = "[[stream]]\nname = \"demo\"\npipeline = \"pipelines/test.toml\"\n";
    std::fs::write(&path, format!("{text}\n{stream}")).unwrap();
    path
}

/// The first scene message `avscene run` publishes for the demo stream with `model`
/// (a broker of its own, CPU, no metrics endpoint), as JSON.
pub fn first_scene_with(dir: &std::path::Path, model: &std::path::Path) -> serde_json::Value {
    let broker = Broker::start("allow_anonymous true");
    let config = demo_config(
        dir,
        &format!(
            "[mqtt]\nport = {}\n[model]\npath = \"{}\"\ndevice = \"cpu\"\n[metrics]\nenabled = false\n",
            broker.port,
            model.display()
        ),
    );
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_avscene"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let scene = first_message(broker.port, "avscene/demo/scene", 60);
    let _ = daemon.kill();
    let _ = daemon.wait();
    serde_json::from_str(&scene).unwrap_or_else(|e| panic!("{e}: {scene:?}"))
}

/// What `mosquitto_sub` prints for `count` messages on `topic` of the broker on `port`
/// (retained ones at once), waiting up to `seconds`; `-v` and friends in `extra`.
fn subscribe(port: u16, topic: &str, count: usize, seconds: u64, extra: &[&str]) -> String {
    let out = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-C", &count.to_string(), "-W", &seconds.to_string()])
        .args(extra)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first message on `topic` (a retained one at once), or "" after `seconds`.
pub fn first_message(port: u16, topic: &str, seconds: u64) -> String {
    subscribe(port, topic, 1, seconds, &[]).trim().to_string()
}

/// Up to `count` messages on `topic` as "topic payload" lines, waiting up to `seconds`.
pub fn messages(port: u16, topic: &str, count: usize, seconds: u64) -> Vec<String> {
    subscribe(port, topic, count, seconds, &["-v"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Wait, up to `seconds`, until `ready` holds; polls every 20 ms. Returns whether it did.
/// A readiness wait: it ends as soon as the condition is met, never a fixed delay.
pub fn wait_until(seconds: f64, mut ready: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
    loop {
        if ready() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The retained message on `topic` once `expected` holds for it ("" when none is
/// retained), waiting up to `seconds`; the last one seen otherwise.
pub fn retained_when(
    port: u16,
    topic: &str,
    seconds: f64,
    expected: impl Fn(&str) -> bool,
) -> String {
    let mut last = String::new();
    wait_until(seconds, || {
        // A retained message comes at once; none within a second means none is retained.
        last = first_message(port, topic, 1);
        expected(&last)
    });
    last
}

/// A `mosquitto_sub -v` that has its subscription acknowledged by the broker before
/// `start` returns (it watches for the SUBACK), collecting `count` messages (or 10 s).
pub struct Subscriber {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Subscriber {
    pub fn start(port: u16, topic: &str, count: usize) -> Subscriber {
        use std::io::BufRead;
        // Line-buffered, or the SUBACK line would wait in stdio's buffer until the end.
        let mut child = std::process::Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                topic,
                "-v",
                "-d",
            ])
            .args(["-C", &count.to_string(), "-W", "10"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let subscribed = lines
            .recv_timeout(std::time::Duration::from_secs(10))
            .into_iter()
            .chain(lines.iter())
            .find(|l| l.contains("received SUBACK"));
        assert!(
            subscribed.is_some(),
            "mosquitto_sub got no SUBACK for {topic}"
        );
        Subscriber { child, lines }
    }

    /// The (topic, payload) of the messages, once it has them all (or gave up).
    pub fn messages(mut self) -> Vec<(String, String)> {
        let _ = self.child.wait();
        // -d writes its own lines ("Client … received PUBLISH …"); -v lines are the messages.
        self.lines
            .iter()
            .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed"))
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(t, p)| (t.to_string(), p.to_string()))
            })
            .collect()
    }
}

/// A step this machine cannot run. Skipped, with the reason printed, only when the run
/// says so — `AVSCENE_TEST_SKIP` lists the step (scripts/test.sh sets it for what the
/// set-up did not install, and says so) — otherwise a failure: no step passes silently.
pub fn cannot_run(step: &str, reason: &str) {
    let skip = std::env::var("AVSCENE_TEST_SKIP").unwrap_or_default();
    if skip.split(',').any(|s| s.trim() == step) {
        println!("SKIPPED {step}: {reason}");
        return;
    }
    panic!(
        "cannot run step '{step}': {reason} (set AVSCENE_TEST_SKIP={step} to skip it on purpose)"
    );
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (the connection closed after it): (status,
/// body).
/// A TCP port nothing listens on now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
